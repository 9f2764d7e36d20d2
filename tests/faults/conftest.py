"""The fault suite: a whole deployment in real processes (tests/helpers/cluster.py), faults
injected, then the invariant sweep (tests/helpers/invariants.py).

Run it alone:   .venv/bin/python -m pytest -m faults tests/faults
A run whose -m expression does not name ``faults`` (plain ``pytest``, ``make test``) deselects
these tests: the suite starts its own PostgreSQL, Redis, sandbox, two web servers and two workers,
and takes minutes.
"""
from __future__ import annotations

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.portal_driver import Recorder, Seeder

FAULTS_DIR = __file__.rsplit("/", 1)[0]


def pytest_collection_modifyitems(config, items):
    if "faults" in (config.option.markexpr or ""):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if str(item.fspath).startswith(FAULTS_DIR) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def fake_mail():
    from tests.helpers.fake_servers import FakeSmtp, serving

    with serving(FakeSmtp()) as fake:
        yield fake


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, fake_mail):
    started = Cluster.start(tmp_path_factory.mktemp("c"), smtp_port=fake_mail.port)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def seeder(cluster):
    made = Seeder(cluster.env)
    yield made
    made.close()


@pytest.fixture
def recorder(cluster):
    rec = Recorder()
    yield rec


@pytest.fixture
def sandbox(cluster):
    yield cluster.sandbox
    cluster.sandbox.reset_faults()


@pytest.fixture(autouse=True)
def _everything_up(cluster):
    """Each scenario starts and ends with every process up (a scenario restarts what it killed)."""
    assert not cluster.alive(), f"down before the test: {cluster.alive()}"
    yield
    cluster.sandbox.reset_faults()
    dead = cluster.alive()
    assert not dead, f"down after the test: {dead}\n" + "\n".join(
        c.log_tail() for c in cluster.webs + cluster.workers if c.name in dead)
