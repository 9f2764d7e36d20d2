"""The audit trail: append-only in the database, each row HMACed, linked into a chain, verifiable.

The sequencer's own behaviour (no lock on the commit path, the anti-join, lag, tampering
with links) is in test_audit_links.py."""
import threading

import psycopg
import pytest

from app.models import AuditEvent
from app.models.audit import AuditLink
from app.services import audit, field_crypto
from app.services.audit import Actor


def _write(db, n, action="test.event", link=True, **fields):
    for i in range(n):
        audit.record(db, actor=Actor.system("test"), action=action, reason=f"row {i}",
                     details={"i": i}, **fields)
    db.commit()
    if link:
        audit.link_all(db)


def test_rows_are_written_at_commit_then_linked_in_seq_order(db):
    audit.record(db, actor=Actor("user", 7, "billing"), action="refund.created", patient_id=3,
                 appointment_id=11, stripe_object_id="re_123", reason="duplicate visit charge",
                 authorized_by=7)
    assert db.query(AuditEvent).count() == 0        # collected, not yet written
    db.commit()
    row = db.query(AuditEvent).one()
    assert (row.seq, row.prev_hash) == (1, None)            # the chain is in audit_links now
    assert row.hash == audit.compute_hash("test-audit-key", db.execute(
        AuditEvent.__table__.select()).mappings().one())      # its own HMAC over its content
    assert (row.actor_type, row.actor_id, row.actor_role) == ("user", 7, "billing")
    assert row.reason == "duplicate visit charge" and row.stripe_object_id == "re_123"
    assert db.query(AuditLink).count() == 0                 # linked later, by the sequencer
    _write(db, 2)
    rows = db.query(AuditEvent).order_by(AuditEvent.seq).all()
    assert [r.seq for r in rows] == [1, 2, 3]
    links = db.query(AuditLink).order_by(AuditLink.position).all()
    assert [(link.position, link.event_seq) for link in links] == [(1, 1), (2, 2), (3, 3)]
    assert links[0].prev_hash == audit.GENESIS
    assert links[1].prev_hash == links[0].hash and links[2].prev_hash == links[1].hash
    assert links[2].hash == audit.link_hash("test-audit-key", links[1].hash, rows[2].hash, 3)


def test_rolled_back_work_leaves_no_audit_row(db):
    audit.record(db, actor=Actor.system(), action="never.happened")
    db.rollback()
    db.commit()
    assert db.query(AuditEvent).count() == 0


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET reason = 'rewritten' WHERE seq = 1",
    "DELETE FROM audit_events WHERE seq = 1",
    "TRUNCATE audit_events CASCADE",        # without CASCADE the links' foreign key refuses it first
    "UPDATE audit_links SET hash = repeat('b', 64) WHERE position = 1",
    "DELETE FROM audit_links WHERE position = 1",
    "TRUNCATE audit_links",
])
def test_database_refuses_to_change_history(db, raw_conn, statement):
    _write(db, 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        raw_conn.execute(statement)
    count, reason = raw_conn.execute("SELECT count(*), max(reason) FROM audit_events").fetchone()
    assert (count, field_crypto.decrypt(reason, context="audit_events.reason")) == (1, "row 0")   # encrypted at rest
    assert raw_conn.execute("SELECT count(*) FROM audit_links").fetchone() == (1,)


def _tamper(raw_conn, statement, *params, table="audit_events", which="USER"):
    """A superuser lifts the trigger (``ALL``: the foreign key's too), changes history, and puts it back."""
    raw_conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {which}")
    try:
        raw_conn.execute(statement, params)
    finally:
        raw_conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {which}")


TAMPERED_VALUES = {
    "occurred_at": "occurred_at + interval '1 second'",
    "actor_type": "'webhook'", "actor_id": "999", "actor_role": "'admin'", "action": "'x.forged'",
    "patient_id": "42", "appointment_id": "42", "payment_attempt_id": "42",
    "stripe_object_id": "'pi_forged'", "encounter_id": "42", "subject_user_id": "42",
    "outcome": "'failure'", "reason": "'forged reason'", "authorized_by": "42",
    "request_id": "'req-forged'", "ip": "'10.9.9.9'", "details": "'{\"i\": 99}'::jsonb",
    "prev_hash": "repeat('a', 64)", "hash": "repeat('b', 64)",
}


def test_the_table_covers_every_column():
    columns = set(AuditEvent.__table__.columns.keys()) - {"seq"}
    assert columns == set(TAMPERED_VALUES)


@pytest.mark.parametrize("linked", [True, False], ids=["linked", "not-yet-linked"])
@pytest.mark.parametrize("column", sorted(TAMPERED_VALUES))
def test_verify_finds_a_change_to_any_column(db, raw_conn, column, linked):
    _write(db, 5, link=linked)
    assert audit.verify(db, key="test-audit-key").ok
    _tamper(raw_conn, f"UPDATE audit_events SET {column} = {TAMPERED_VALUES[column]} WHERE seq = 3")
    result = audit.verify(db, key="test-audit-key")
    assert not result.ok
    assert result.broken_seq == 3
    assert result.checked == 2


def test_a_linked_row_cannot_be_deleted_even_with_the_trigger_lifted(db, raw_conn):
    _write(db, 5)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        _tamper(raw_conn, "DELETE FROM audit_events WHERE seq = 3")


def test_verify_finds_a_row_deleted_from_the_middle(db, raw_conn):
    _write(db, 5)
    _tamper(raw_conn, "DELETE FROM audit_events WHERE seq = 3", which="ALL")   # the foreign key lifted too
    result = audit.verify(db, key="test-audit-key")
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "missing" in result.problem


def test_verify_refuses_a_chain_rehashed_without_the_key(db, raw_conn):
    _write(db, 3)
    forged = dict(db.execute(AuditEvent.__table__.select().where(AuditEvent.seq == 2)).mappings().one())
    forged["reason"] = "forged"
    new_hash = audit.compute_hash("someone-elses-key", forged)
    _tamper(raw_conn, "UPDATE audit_events SET reason = 'forged', hash = %s WHERE seq = 2", new_hash)
    assert audit.verify(db, key="test-audit-key").broken_seq == 2


def test_chain_verifies_after_20_concurrent_writers_then_the_sequencer(app, db):
    from app.extensions import db as sqla

    errors = []
    barrier = threading.Barrier(20)

    def writer(n):
        try:
            with app.app_context():
                barrier.wait()
                for i in range(5):
                    audit.record(sqla.session, actor=Actor.system("test"), action="concurrent",
                                 details={"writer": n, "i": i})
                    audit.record(sqla.session, actor=Actor.system("test"), action="concurrent",
                                 details={"writer": n, "i": i, "second": True})
                    sqla.session.commit()
                sqla.session.remove()
        except Exception as error:   # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    before = audit.verify(db, key="test-audit-key")        # every row checked by its own HMAC
    assert before.ok and (before.checked, before.linked, before.lag.unlinked) == (200, 0, 200), str(before)
    assert audit.link_all(db, limit=64) == 200              # in batches
    result = audit.verify(db, key="test-audit-key")
    assert result.ok, str(result)
    assert (result.checked, result.linked, result.head_position, result.lag.unlinked) == (200, 200, 200, 0)
    assert [seq for (seq,) in db.query(AuditEvent.seq).order_by(AuditEvent.seq)] == list(range(1, 201))
    assert [seq for (seq,) in db.query(AuditLink.event_seq).order_by(AuditLink.position)] == list(range(1, 201))


def test_flask_audit_verify_command(app, db, raw_conn):
    _write(db, 3)
    _write(db, 1, link=False)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 4 rows (3 linked, head position 3" in ok.output, ok.output
    assert "not yet linked: 1 rows not yet linked, the oldest seq 4" in ok.output
    _tamper(raw_conn, "UPDATE audit_events SET action = 'x' WHERE seq = 4")
    unlinked = runner.invoke(args=["audit", "verify"])
    assert unlinked.exit_code == 1 and "BROKEN at seq 4" in unlinked.output and "not yet linked" in unlinked.output
    _tamper(raw_conn, "UPDATE audit_events SET action = 'x' WHERE seq = 2")
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert "BROKEN at seq 2" in broken.output


def test_anchor_logs_the_chain_head(app, db, caplog):
    _write(db, 2)
    _write(db, 1, link=False)                                # the head is the last link
    caplog.set_level("INFO", logger="app.audit")
    head = audit.anchor(db)
    assert head[0] == 2
    assert f"audit anchor position=2 hash={head[1]} seq=2" in caplog.text
    assert head == (2, db.query(AuditLink.hash).filter_by(position=2).scalar())
