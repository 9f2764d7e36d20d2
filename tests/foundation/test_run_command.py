"""make run (devtools/run.py): what it prints once everything is up, and its one-command mode."""
import os
import subprocess
import sys
from pathlib import Path

from devtools.run import banner, seeded_logins, web_command
from tests.helpers.web import login

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "http://127.0.0.1:5000/"
SANDBOX = "http://127.0.0.1:41234"


def test_the_portal_url_is_printed_last_alone_on_its_line_after_the_sandbox():
    lines = banner(PORTAL, seeded_logins(), stripe_sandbox=SANDBOX).splitlines()
    assert lines[-1] == PORTAL
    assert sum(PORTAL.rstrip("/") in line for line in lines) == 1
    (sandbox_line,) = [i for i, line in enumerate(lines) if SANDBOX in line]
    assert sandbox_line < len(lines) - 1 and "not the portal" in lines[sandbox_line]


def test_the_payer_simulator_is_named_as_a_stand_in_before_the_portal_url():
    payer = "http://127.0.0.1:41999"
    lines = banner(PORTAL, seeded_logins(), stripe_sandbox=SANDBOX, payer_sandbox=payer).splitlines()
    assert lines[-1] == PORTAL
    (payer_line,) = [line for line in lines if payer in line]
    assert "clearinghouse" in payer_line and "not the portal" in payer_line


def test_without_the_sandbox_the_url_is_still_last():
    text = banner(PORTAL, seeded_logins())
    assert text.splitlines()[-1] == PORTAL and "sandbox" not in text.lower()


def test_the_banner_lists_every_login_the_seed_creates_and_each_works(app, db, client):
    from app.models import User
    from app.services.seed import seed_demo

    seed_demo(db)
    db.commit()
    logins = seeded_logins()
    assert {email for _, email, _ in logins} == {user.email for user in db.query(User)}
    text = banner(PORTAL, logins)
    for role, email, password in logins:
        assert any(email in line and role in line and password in line for line in text.splitlines())
        response = login(app.test_client(), email, password)
        assert response.status_code == 303, (email, response.status_code)


def test_one_command_mode_runs_flask_with_the_given_services(database_url, service_urls, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "APP_ENV"))}
    env.update(DATABASE_URL=database_url, REDIS_URL=service_urls["REDIS_URL"], INSTANCE_PATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "devtools.run", "flask", "routes"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "/login" in out.stdout
    assert "Starting embedded" not in out.stdout


def test_make_run_serves_with_gunicorn_and_the_checked_in_config():
    """The production server with the production config, bound to loopback only."""
    command = web_command(5095)
    assert command[:3] == [sys.executable, "-m", "gunicorn"]
    config = Path(command[command.index("--config") + 1])
    assert config == ROOT / "gunicorn.conf.py" and config.is_file()
    assert command[command.index("--bind") + 1] == "127.0.0.1:5095"
    assert command[-1] == "wsgi:app"


def test_make_dev_keeps_flasks_reloading_server():
    command = web_command(5095, dev_server=True)
    assert command[:5] == [sys.executable, "-m", "flask", "--app", "wsgi"]
    assert "run" in command and "--reload" in command
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "5095"
