"""The audit chain off the commit path: rows are written with their own HMAC and no lock; one
sequencer links committed rows (an anti-join, never an id high-water mark); verify walks the
links, checks the rows not yet linked, and reports the lag."""
import threading
from contextlib import contextmanager
from datetime import datetime, timezone

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.models.audit import AuditLink
from app.services import audit
from app.services.audit import Actor

KEY = "test-audit-key"


def _write(db, n, action="test.event"):
    for i in range(n):
        audit.record(db, actor=Actor.system("test"), action=action, details={"i": i})
    db.commit()


def _links(db):
    return [(l.position, l.event_seq) for l in db.query(AuditLink).order_by(AuditLink.position)]


@contextmanager
def _held_commit(app, action="held.event"):
    """A transaction stopped inside its commit, just after its audit rows were inserted (uncommitted).

    Yields (release, backend pid); on release the commit finishes (in its thread)."""
    from app.extensions import db as sqla

    release, written, done, errors, pid = threading.Event(), threading.Event(), threading.Event(), [], []

    def run():
        try:
            with app.app_context():
                session = Session(bind=sqla.engine)
                audit.record(session, actor=Actor.system("test"), action=action)
                pid.append(session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar())

                @event.listens_for(session, "before_commit")      # runs after the audit hook
                def hold(_session):
                    written.set()
                    release.wait(30)

                session.commit()
                session.close()
        except Exception as error:   # surfaced below
            errors.append(error)
        finally:
            written.set()
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert written.wait(10)
    assert not errors, errors
    try:
        yield release, pid[0]
    finally:
        release.set()
        thread.join(30)
    assert done.is_set() and not errors, errors


def _commit_in_thread(app, action, timeout=5.0) -> bool:
    from app.extensions import db as sqla

    finished, errors = threading.Event(), []

    def run():
        try:
            with app.app_context():
                audit.record(sqla.session, actor=Actor.system("test"), action=action)
                sqla.session.commit()
                sqla.session.remove()
            finished.set()
        except Exception as error:   # surfaced below
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ok = finished.wait(timeout)
    thread.join(timeout)
    assert not errors, errors
    return ok


def test_audited_commits_do_not_wait_for_each_other(app, db, raw_conn):
    with _held_commit(app) as (release, pid):
        # Its audit row is inserted, its commit not finished, and it holds no advisory lock.
        assert raw_conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                                (pid,)).fetchone() == (0,)
        assert raw_conn.execute("SELECT count(*) FROM audit_events").fetchone() == (0,)
        assert _commit_in_thread(app, "second.event"), "a second audited commit waited for the first"
        assert raw_conn.execute("SELECT action FROM audit_events").fetchall() == [("second.event",)]
        release.set()
    assert sorted(a for (a,) in raw_conn.execute("SELECT action FROM audit_events")) == ["held.event",
                                                                                         "second.event"]


def test_the_sequencer_never_links_an_uncommitted_row_and_finds_late_commits(app, db):
    with _held_commit(app) as (release, _pid):           # takes seq 1, commits last
        _write(db, 2, action="committed.first")          # seqs 2 and 3
        assert audit.link_all(db) == 2                   # not blocked by the open transaction
        assert _links(db) == [(1, 2), (2, 3)]
        assert audit.lag(db).unlinked == 0               # an uncommitted row is not even lag
        release.set()
    # Committed now with a lower seq than rows already linked: the anti-join still finds it.
    assert audit.lag(db).unlinked == 1 and audit.lag(db).oldest_seq == 1
    assert audit.link_all(db) == 1
    assert _links(db) == [(1, 2), (2, 3), (3, 1)]
    result = audit.verify(db, key=KEY)
    assert result.ok and (result.checked, result.linked, result.head_position) == (3, 3, 3), str(result)


def test_the_sequencer_links_in_batches_and_positions_stay_gap_free_under_concurrent_sequencers(app, db):
    from app.extensions import db as sqla

    _write(db, 120)
    first = audit.link_pending(db, limit=50)
    assert (first.linked, first.seen) == (50, 50)
    assert _links(db)[-1] == (50, 50)
    errors = []

    def sequencer():
        try:
            with app.app_context():
                while audit.link_pending(sqla.session, limit=7).seen:
                    pass
                sqla.session.remove()
        except Exception as error:   # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=sequencer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _links(db) == [(n, n) for n in range(1, 121)]
    assert audit.verify(db, key=KEY).ok


def test_lag_is_reported_by_verify_and_cleared_by_the_sequencer(db):
    _write(db, 2)
    audit.link_all(db)
    _write(db, 3)
    result = audit.verify(db, key=KEY)
    assert result.ok and (result.checked, result.linked) == (5, 2)
    assert (result.lag.unlinked, result.lag.oldest_seq) == (3, 3)
    assert 0 <= result.lag.oldest_age < 60
    assert "3 rows not yet linked, the oldest seq 3" in str(result)
    audit.link_all(db)
    assert audit.verify(db, key=KEY).lag.unlinked == 0


def _lift(raw_conn, table, statement, *params, which="USER"):
    raw_conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {which}")
    try:
        raw_conn.execute(statement, params)
    finally:
        raw_conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {which}")


@pytest.mark.parametrize("column,value", [("hash", "repeat('c', 64)"), ("prev_hash", "repeat('c', 64)"),
                                          ("event_seq", "4")])
def test_verify_finds_an_altered_link(db, raw_conn, column, value):
    _write(db, 5)
    audit.link_all(db)
    if column == "event_seq":   # point link 3 at row 4, and link 4 at row 3 (a reordering)
        _lift(raw_conn, "audit_links", "UPDATE audit_links SET event_seq = -event_seq WHERE position IN (3, 4)",
              which="ALL")
        _lift(raw_conn, "audit_links", "UPDATE audit_links SET event_seq = 7 + event_seq WHERE position IN (3, 4)",
              which="ALL")
    else:
        _lift(raw_conn, "audit_links", f"UPDATE audit_links SET {column} = {value} WHERE position = 3")
    if column == "event_seq":
        assert _links(db)[2:4] == [(3, 4), (4, 3)]
    result = audit.verify(db, key=KEY)
    assert not result.ok and result.checked == 2, str(result)
    assert "link 3 does not" in result.problem


def test_verify_finds_a_link_deleted_from_the_middle(db, raw_conn):
    _write(db, 5)
    audit.link_all(db)
    _lift(raw_conn, "audit_links", "DELETE FROM audit_links WHERE position = 3")
    result = audit.verify(db, key=KEY)
    assert (result.ok, result.checked) == (False, 2)
    assert "link 3 is missing" in result.problem


def test_a_forged_row_is_never_linked_and_verify_reports_it(db, raw_conn, caplog):
    _write(db, 2)
    forged = dict(action="x.forged", actor_type="system", outcome="success", details={})
    raw_conn.execute("INSERT INTO audit_events (occurred_at, actor_type, action, outcome, details, hash) "
                     "VALUES (now(), 'system', 'x.forged', 'success', '{}', %s)",
                     (audit.compute_hash("someone-elses-key", dict(forged, seq=3)),))
    _write(db, 1)
    result = audit.verify(db, key=KEY)
    assert (result.ok, result.broken_seq) == (False, 3) and "not yet linked" in result.problem
    caplog.set_level("ERROR", logger="app.audit")
    assert audit.link_all(db) == 3                       # the genuine rows; the forged one is refused
    assert _links(db) == [(1, 1), (2, 2), (3, 4)]
    assert "row seq=3 does not match its HMAC" in caplog.text
    result = audit.verify(db, key=KEY)
    assert (result.ok, result.broken_seq, result.checked) == (False, 3, 3)


def test_the_tables_refuse_changes_to_links(db, raw_conn):
    _write(db, 1)
    audit.link_all(db)
    for statement in ("UPDATE audit_links SET hash = 'x'", "DELETE FROM audit_links", "TRUNCATE audit_links"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            raw_conn.execute(statement)


def test_rows_written_before_the_links_are_linked_first_and_verify(db, raw_conn):
    """A database migrated from before 0007: rows chained row to row, HMACs over their prev_hash."""
    prev = audit.GENESIS
    for seq in (1, 2, 3):
        row = dict(seq=seq, occurred_at=datetime(2026, 11, 1, tzinfo=timezone.utc), actor_type="system",
                   action="old.event", outcome="success", details={"n": seq}, prev_hash=prev)
        row["hash"] = audit.compute_hash(KEY, row)
        raw_conn.execute("INSERT INTO audit_events (seq, occurred_at, actor_type, action, outcome, details, "
                         "prev_hash, hash) VALUES (%s, %s, 'system', 'old.event', 'success', %s, %s, %s)",
                         (seq, row["occurred_at"], psycopg.types.json.Jsonb(row["details"]), prev, row["hash"]))
        prev = row["hash"]
    raw_conn.execute("SELECT setval('audit_events_seq_seq', 4, false)")     # what the migration does
    _write(db, 2)
    assert audit.verify(db, key=KEY).ok
    assert audit.link_all(db) == 5
    assert _links(db) == [(n, n) for n in range(1, 6)]
    result = audit.verify(db, key=KEY)
    assert result.ok and result.linked == 5, str(result)


def test_the_link_job_and_the_sweep_step(app, db, caplog):
    from app.jobs import set_app
    from app.jobs import audit as audit_jobs
    from app.jobs.periodic import _link_and_report

    set_app(app)
    _write(db, 3)
    assert audit_jobs.link() == 3
    assert audit_jobs.link() == 0
    _write(db, 2)
    caplog.set_level("INFO", logger="app.audit")
    _link_and_report(db)
    assert "audit linked 2 rows; before: 2 rows not yet linked" in caplog.text
    assert "after: 0 rows not yet linked" in caplog.text
    assert audit.head(db)[0] == 5
