"""Fixtures for the payer simulator and the clearinghouse client: one simulator process per session.

These tests need no database: they drive devtools/payer_sandbox over HTTP through
app/integrations/clearinghouse.py (and the simulator's /_sandbox/ admin routes). Fresh members
(``new_member``) come from tests/helpers/fixtures_insurance.py.
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
def claim_ids():
    return (f"clm-{int(time.time() * 1000)}-{next(_numbers)}" for _ in itertools.count())
