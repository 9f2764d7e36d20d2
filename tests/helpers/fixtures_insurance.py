"""Insurance fixtures shared by several folders (intake, estimates, payer): the clinic's payer list (the
simulator's two demo payers) and fresh payer-simulator members. Registered once, in tests/conftest.py
(``pytest_plugins``); app modules are imported inside the fixtures (the payer tests need no database)."""
import itertools
import time

import pytest

_numbers = itertools.count(1)


@pytest.fixture
def payers(db):
    """AETNA-DEMO and BCBS-DEMO on the clinic's payer list: {payer id: Payer}."""
    from app.models import Payer

    rows = [Payer(id="AETNA-DEMO", name="Aetna (demo)", default_allowed_percent=60),
            Payer(id="BCBS-DEMO", name="Blue Cross Blue Shield (demo)", default_allowed_percent=55)]
    db.add_all(rows)
    db.commit()
    return {p.id: p for p in rows}


@pytest.fixture
def new_member(payer_sandbox):
    """new_member(payer_id='AETNA-DEMO', plan_id='AETNA-PPO', **fields) -> the member id of a fresh simulator
    member (never a demo member: accumulators another test moved never leak into this one)."""
    def make(payer_id: str = "AETNA-DEMO", plan_id: str = "AETNA-PPO", **fields) -> str:
        member_id = f"M{int(time.time()) % 100000:05d}{next(_numbers):05d}"
        payer_sandbox.put_member(payer_id, member_id, plan_id=plan_id, **fields)
        return member_id
    return make
