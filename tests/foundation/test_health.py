"""/healthz (the process answers) and /readyz (database, Redis, migrations at head): public, cheap,
never cached, no PHI."""
import pytest
from alembic.script import ScriptDirectory

from tests.helpers.outages import app_on, closed_database_url, closed_port


def _assert_probe(response):
    assert response.headers["Cache-Control"] == "no-store"
    assert response.is_json
    assert "Set-Cookie" not in response.headers


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}
    _assert_probe(response)


def test_readyz_when_all_is_well(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {"status": "ok",
                             "checks": {"database": "ok", "redis": "ok", "migrations": "ok"}}
    _assert_probe(response)


def test_readyz_names_redis_when_it_is_unreachable(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["redis"]
    assert response.json["checks"] == {"database": "ok", "redis": "unreachable", "migrations": "ok"}
    _assert_probe(response)


@pytest.fixture
def database_version(app, raw_conn):
    """Set the database's Alembic version for one test; the real one is put back."""
    (real,) = raw_conn.execute("SELECT version_num FROM alembic_version").fetchone()

    def set_to(revision):
        raw_conn.execute("UPDATE alembic_version SET version_num = %s", (revision,))

    yield set_to
    set_to(real)


def _script(app) -> ScriptDirectory:
    return ScriptDirectory(app.extensions["migrate"].directory)


def test_readyz_says_the_database_is_behind_the_migration_head(app, client, database_version):
    script = _script(app)
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    database_version(previous)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["failed"] == ["migrations"]
    assert response.json["checks"]["migrations"] == "behind"
    assert response.json["checks"]["database"] == "ok"
    _assert_probe(response)

    database_version("not-a-revision-of-ours")          # e.g. a newer release migrated it
    assert client.get("/readyz").json["checks"]["migrations"] == "unknown revision"


def test_probes_when_the_database_is_away(service_urls, tmp_path):
    with app_on(closed_database_url(), service_urls["REDIS_URL"], tmp_path) as outage:
        client = outage.test_client()
        alive = client.get("/healthz")
        assert alive.status_code == 200                  # liveness: a restart would not help
        _assert_probe(alive)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["failed"] == ["database", "migrations"]
        assert ready.json["checks"] == {"database": "unreachable", "redis": "ok", "migrations": "unknown"}
        assert "127.0.0.1" not in ready.get_data(as_text=True)
        _assert_probe(ready)
