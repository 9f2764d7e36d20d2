"""The ledger's guarantees in the database itself (issue 16): a transaction that does not balance is
refused at commit (a deferred constraint trigger), posted entries can be neither changed nor removed
by the app's role, and ``ledger.post`` writes a dedupe key once."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.models.ledger import LedgerEntry, LedgerTransaction
from app.services import ledger
from app.services.ledger import Entry

WHEN = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)


def _entries(db) -> int:
    return db.scalar(select(func.count()).select_from(LedgerEntry))


def test_an_unbalanced_transaction_is_refused_at_commit(db):
    txn = LedgerTransaction(kind="charge", dedupe_key="charge:ch_unbalanced", occurred_at=WHEN)
    db.add(txn)
    db.flush()
    db.add(LedgerEntry(transaction_id=txn.id, account=ledger.STRIPE_BALANCE, amount_cents=9680,
                       balance_transaction_id="txn_x"))
    db.add(LedgerEntry(transaction_id=txn.id, account=ledger.PATIENT_PAYMENTS, amount_cents=-10000))
    db.flush()                                   # deferred: the entries go in one by one
    with pytest.raises(IntegrityError, match="does not balance"):
        db.commit()
    db.rollback()
    assert db.scalar(select(func.count()).select_from(LedgerTransaction)) == 0 and _entries(db) == 0
    # The same entries balanced commit.
    txn = LedgerTransaction(kind="charge", dedupe_key="charge:ch_balanced", occurred_at=WHEN)
    db.add(txn)
    db.flush()
    db.add_all([LedgerEntry(transaction_id=txn.id, account=ledger.STRIPE_BALANCE, amount_cents=9680),
                LedgerEntry(transaction_id=txn.id, account=ledger.STRIPE_FEES, amount_cents=320),
                LedgerEntry(transaction_id=txn.id, account=ledger.PATIENT_PAYMENTS, amount_cents=-10000)])
    db.commit()
    assert _entries(db) == 3


def test_post_refuses_an_unbalanced_set_before_writing(db):
    with pytest.raises(ledger.Unbalanced):
        ledger.post(db, kind="charge", dedupe_key="charge:ch_off", occurred_at=WHEN,
                    entries=[Entry(ledger.STRIPE_BALANCE, 100), Entry(ledger.PATIENT_PAYMENTS, -99)])
    assert _entries(db) == 0


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount_cents = amount_cents + 1",
    "DELETE FROM ledger_entries",
    "UPDATE ledger_transactions SET occurred_at = now()",
    "DELETE FROM ledger_transactions",
    "TRUNCATE ledger_entries",
])
def test_the_apps_role_cannot_change_or_remove_posted_entries(db, statement):
    ledger.post(db, kind="charge", dedupe_key="charge:ch_kept", occurred_at=WHEN,
                entries=[Entry(ledger.STRIPE_BALANCE, 9680, balance_transaction_id="txn_kept"),
                         Entry(ledger.STRIPE_FEES, 320, balance_transaction_id="txn_kept"),
                         Entry(ledger.PATIENT_PAYMENTS, -10000)])
    db.commit()
    with pytest.raises(DBAPIError):
        db.execute(text(statement))
        db.flush()
    db.rollback()
    assert sorted(db.scalars(select(LedgerEntry.amount_cents))) == [-10000, 320, 9680]
    assert db.scalar(select(LedgerTransaction.occurred_at)) == WHEN


def test_post_writes_a_dedupe_key_once(db):
    entries = [Entry(ledger.STRIPE_BALANCE, 4825, balance_transaction_id="txn_once"),
               Entry(ledger.STRIPE_FEES, 175, balance_transaction_id="txn_once"),
               Entry(ledger.PATIENT_PAYMENTS, -5000)]
    first, posted = ledger.post(db, kind="charge", dedupe_key="charge:ch_once", occurred_at=WHEN, entries=entries,
                                stripe_object_id="ch_once")
    assert posted
    db.commit()
    again, posted_again = ledger.post(db, kind="charge", dedupe_key="charge:ch_once", occurred_at=WHEN,
                                      entries=entries, stripe_object_id="ch_once")
    assert not posted_again and again.id == first.id
    db.commit()
    assert db.scalar(select(func.count()).select_from(LedgerTransaction)) == 1 and _entries(db) == 3
    assert ledger.posted(db, "charge:ch_once") and ledger.balance(db, ledger.STRIPE_BALANCE) == 4825
