"""The audit anchor: the chain head kept outside the database (an append-only file and the log),
so rows cut from the end of the chain, which leave a shorter but intact chain, are found by
`flask audit verify`."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from app.jobs import set_app
from app.services import audit
from app.services.audit import Actor


def _write(db, n):
    for i in range(n):
        audit.record(db, actor=Actor.system("test"), action="test.event", reason=f"row {i}", details={"i": i})
    db.commit()
    audit.link_all(db)


@pytest.fixture
def anchor_file(app):
    path = app.config["SETTINGS"].audit_anchor_path
    path.unlink(missing_ok=True)
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cut_the_tail(raw_conn, keep):
    """What a superuser can do: lift every trigger (the append-only ones and the foreign key's) and
    delete the newest links and their rows, leaving a shorter chain that is intact in itself."""
    raw_conn.execute("ALTER TABLE audit_links DISABLE TRIGGER ALL; ALTER TABLE audit_events DISABLE TRIGGER ALL")
    try:
        raw_conn.execute("DELETE FROM audit_events WHERE seq IN (SELECT event_seq FROM audit_links "
                         "WHERE position > %s)", (keep,))
        raw_conn.execute("DELETE FROM audit_links WHERE position > %s", (keep,))
    finally:
        raw_conn.execute("ALTER TABLE audit_links ENABLE TRIGGER ALL; ALTER TABLE audit_events ENABLE TRIGGER ALL")


def test_rows_cut_from_the_end_make_verify_fail_and_name_the_gap(app, db, raw_conn, anchor_file, caplog):
    runner = app.test_cli_runner()
    _write(db, 7)
    caplog.set_level("INFO", logger="app.audit")
    anchored = runner.invoke(args=["audit", "anchor"])
    assert anchored.exit_code == 0, anchored.output
    assert "head position=7" in anchored.output
    [line] = _lines(anchor_file)
    assert line["position"] == 7 and len(line["hash"]) == 64 and datetime.fromisoformat(line["at"])
    assert f"audit anchor position=7 hash={line['hash']}" in caplog.text        # and the log
    intact = runner.invoke(args=["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "matches 1 anchors" in intact.output

    _cut_the_tail(raw_conn, keep=4)
    # The database alone no longer shows it: what is left is a complete, valid chain.
    assert audit.verify(db, key="test-audit-key").ok
    cut = runner.invoke(args=["audit", "verify"])
    assert cut.exit_code == 1, cut.output
    assert "audit chain is missing 3 rows after position 4 (anchor of " in cut.output
    assert f"{line['at'][:10]}" in cut.output


def test_a_rewritten_tail_differs_from_the_anchor(app, db, raw_conn, anchor_file):
    """Cut and then grow the chain past the anchored position: the length is back, the hash is not."""
    runner = app.test_cli_runner()
    _write(db, 5)
    assert runner.invoke(args=["audit", "anchor"]).exit_code == 0
    _cut_the_tail(raw_conn, keep=3)
    _write(db, 4)                               # new rows, linked at positions 4..7
    rewritten = runner.invoke(args=["audit", "verify"])
    assert rewritten.exit_code == 1, rewritten.output
    assert "differs from the anchor of" in rewritten.output and "at position 5" in rewritten.output


def test_verify_without_an_anchor_says_so_and_passes(app, db, anchor_file):
    _write(db, 2)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "no audit anchor" in result.output


@pytest.mark.parametrize("garbage", ["not json at all", '{"position": "7", "hash": "x"}', "[]",
                                     '{"position": 3, "hash": "' + "z" * 64 + '", "at": "2026-11-29T00:00:00+00:00"}',
                                     '{"position": 3}'])
def test_a_garbage_anchor_line_is_a_clear_error(app, db, anchor_file, garbage):
    _write(db, 3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "anchor"]).exit_code == 0
    with anchor_file.open("a") as handle:
        handle.write(garbage + "\n")
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"audit anchor file {anchor_file}: line 2 is not an anchor" in result.output


def test_the_link_job_anchors_when_due(app, db, anchor_file):
    """The sequencer's job anchors after linking: at once the first time, then only once
    AUDIT_ANCHOR_INTERVAL has passed or AUDIT_ANCHOR_ROWS links were added."""
    from app.jobs import audit as audit_jobs

    set_app(app)
    settings = app.config["SETTINGS"]
    audit.record(db, actor=Actor.system("test"), action="test.event")
    db.commit()
    assert audit_jobs.link() == 1
    assert [line["position"] for line in _lines(anchor_file)] == [1]
    audit.record(db, actor=Actor.system("test"), action="test.event")
    db.commit()
    assert audit_jobs.link() == 1
    assert [line["position"] for line in _lines(anchor_file)] == [1]     # not due yet
    later = datetime.now(timezone.utc) + settings.AUDIT_ANCHOR_INTERVAL + timedelta(seconds=1)
    with app.app_context():
        from app.extensions import db as sqla

        assert audit.anchor_if_due(sqla.session, anchor_file, interval=settings.AUDIT_ANCHOR_INTERVAL,
                                   rows=settings.AUDIT_ANCHOR_ROWS, now=later) == audit.head(sqla.session)
        sqla.session.commit()
        assert audit.anchor_if_due(sqla.session, anchor_file, interval=timedelta(hours=1), rows=1,
                                   now=later) is None                   # the head has not moved since
        sqla.session.rollback()
    assert [line["position"] for line in _lines(anchor_file)] == [1, 2]
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0
