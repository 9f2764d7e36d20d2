"""/dev/outbox (app/blueprints/dev) lists every message's recipient: it exists only when
APP_ENV=development, and there only for a signed-in admin. Test and production apps have no such
route (the route table of tests/foundation/test_access.py runs on a test-mode app, so the
outbox's rules are here)."""
import pytest

from tests.conftest import make_settings, stripe_settings
from tests.foundation.test_log_scrub import dispose
from tests.helpers.web import login


@pytest.fixture
def dev_app(db, database_url, service_urls, tmp_path, stripe_sandbox):
    from app import create_app

    application = create_app(make_settings(database_url, service_urls["REDIS_URL"], tmp_path,
                                           **stripe_settings(stripe_sandbox), APP_ENV="development"))
    yield application
    dispose(application)


def test_not_there_outside_development(app, client):
    assert "dev.outbox" not in app.view_functions
    assert client.get("/dev/outbox").status_code == 404


def test_development_outbox_is_for_signed_in_admins_only(dev_app, factories):
    anonymous = dev_app.test_client()
    response = anonymous.get("/dev/outbox")
    assert response.status_code == 302 and "/login" in response.headers["Location"]

    for role in ("patient", "provider", "billing"):
        other = dev_app.test_client()
        assert login(other, factories.user(role).email).status_code == 303
        assert other.get("/dev/outbox").status_code == 403, role

    admin = dev_app.test_client()
    assert login(admin, factories.user("admin").email).status_code == 303
    page = admin.get("/dev/outbox")
    assert page.status_code == 200 and "<h1>Outbox</h1>" in page.get_data(as_text=True)


def test_production_registers_no_dev_blueprint():
    from flask import Flask

    from app.blueprints import register_blueprints
    from app.settings import Settings

    for mode, present in (("production", False), ("test", False), ("development", True)):
        probe = Flask("probe")
        probe.config["SETTINGS"] = Settings(APP_ENV=mode)
        register_blueprints(probe)
        assert ("dev" in probe.blueprints) is present, mode


def test_wsgi_without_app_env_is_production(tmp_path):
    """A server started from wsgi.py with no APP_ENV is a production one: it asks for the
    production secrets (make run / make dev set APP_ENV=development)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APP_ENV", "SECRET_KEY", "AUDIT_HMAC_KEY", "STRIPE_"))}
    env.update(DATABASE_URL="postgresql://127.0.0.1:1/x", REDIS_URL="redis://127.0.0.1:1/0",
               INSTANCE_PATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Refusing to start in production without: SECRET_KEY" in result.stderr, result.stderr
