"""Fixtures for the payer simulator and the clearinghouse client: one simulator process per session.

These tests need no database: they drive devtools/payer_sandbox over HTTP through
app/integrations/clearinghouse.py (and the simulator's /_sandbox/ admin routes).
"""
from __future__ import annotations

import itertools
import time

import pytest

from app.integrations.clearinghouse import Clearinghouse

from tests.conftest import PAYER_DELAY as DELAY   # the session's simulator (tests/conftest.py)

_numbers = itertools.count(1)


@pytest.fixture
def clearinghouse(payer_sandbox):
    yield Clearinghouse(payer_sandbox.api_base, payer_sandbox.api_key, timeout=(2, 10))
    payer_sandbox.reset_faults()


@pytest.fixture
def new_member(payer_sandbox):
    """A fresh member of its own (so accumulators never leak between tests): returns the member id."""
    def make(payer_id: str = "AETNA-DEMO", plan_id: str = "AETNA-PPO", **fields) -> str:
        member_id = f"T{int(time.time()) % 100000:05d}{next(_numbers):05d}"
        payer_sandbox.put_member(payer_id, member_id, plan_id=plan_id, **fields)
        return member_id
    return make


@pytest.fixture
def claim_ids():
    return (f"clm-{int(time.time() * 1000)}-{next(_numbers)}" for _ in itertools.count())
