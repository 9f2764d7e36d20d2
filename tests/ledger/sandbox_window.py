"""A window of the shared Stripe sandbox's clock that only this test's balance transactions fall in.

The sandbox outlives each test's database and is shared by the whole session: other tests' objects
are in its lists, and their delayed work (a 5126 refund failing, a 0259 dispute opening, a won
dispute's reinstatement, a failing payout: each a balance transaction created when its timer fires,
``STRIPE_SANDBOX_LATER_SECONDS`` of real time after its cause, or when the clock is advanced past
it) could land in a later test's window. The sandbox keeps those timers in its sqlite store
(``timers(obj_id, kind, due)``, devtools/stripe_sandbox/store.py, fired by ``sweep`` on every API call,
on every clock advance and by its ticker); it has no admin route to list them, so this helper reads
that table read-only and advances the sandbox clock past the last one, so they fire *before* the
window opens. Then it advances one more second: nothing made before the window shares its first
second. (Proposed to the lead: a ``GET /_sandbox/timers`` admin route, or ``POST /_sandbox/timers/run``,
would replace the file read.)
"""
from __future__ import annotations

import os
import sqlite3

# Timers whose firing creates a balance transaction (platform or connected account).
MONEY_TIMERS = ("refund_fail", "dispute_open", "dispute_outcome", "payout_arrival")


def pending_money_timers(sandbox) -> list[int]:
    """The ``due`` times (sandbox seconds) of timers that will create a balance transaction."""
    path = os.path.join(sandbox.data_dir, "sandbox.sqlite3")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(MONEY_TIMERS))
        return [row[0] for row in conn.execute(f"SELECT due FROM timers WHERE kind IN ({marks})", MONEY_TIMERS)]
    finally:
        conn.close()


def open_window(sandbox) -> int:
    """Fire every pending money timer now, then return the window's start (sandbox seconds)."""
    dues = pending_money_timers(sandbox)
    if dues:
        sandbox.advance_clock(max(0, max(dues) - sandbox.now()))
    left = pending_money_timers(sandbox)
    assert not left, f"sandbox timers still pending after the clock passed them: {left}"
    sandbox.advance_clock(1)
    return sandbox.now()


def close_window(sandbox) -> int:
    """The window's end (exclusive): everything this test made so far is before it."""
    return sandbox.now() + 1
