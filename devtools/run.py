"""The run command (``make run``): everything the portal needs, in one terminal.

1. starts the embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL
   are set (devtools/embedded.py), the Stripe sandbox unless
   STRIPE_SECRET_KEY is set (devtools/stripe_sandbox), and the payer simulator
   unless CLEARINGHOUSE_URL is set (devtools/payer_sandbox), and exports their
   URLs to every process it starts (the app itself never starts a service);
2. applies the migrations (as DATABASE_URL's owner), creates and grants the app's own
   database role (``clinic_app``, owning nothing: app/services/db_roles.py) and hands its URL
   to the app as DATABASE_APP_URL, and seeds the demo clinic (once);
3. starts the RQ worker (with its scheduler) and the web server, waits until
   both are up, then prints the Stripe sandbox's address, every seeded login
   and, last and alone on its line, the portal's URL; and waits.

The web server is the production one: gunicorn with the checked-in gunicorn.conf.py (bound to
127.0.0.1), so what runs here is what is deployed. ``--dev`` (make dev) runs Flask's reloading
development server instead.

Ctrl-C (or SIGTERM) stops every process it started and the embedded services.

    python -m devtools.run                      # the above
    python -m devtools.run --dev                # the same with the reloading Flask server
    python -m devtools.run flask audit verify   # one command, with the same services
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
GUNICORN_CONFIG = ROOT / "gunicorn.conf.py"
STOP_TIMEOUT = 40.0        # longer than gunicorn's graceful_timeout (30 s)


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def service_env(settings) -> dict[str, str]:
    """The environment for the app's processes: DATABASE_URL / REDIS_URL always set,
    from embedded services where the environment named none."""
    from devtools.embedded import ensure_services

    env = dict(os.environ, APP_ENV=settings.APP_ENV, PYTHONUNBUFFERED="1")
    need_db, need_redis = not settings.DATABASE_URL, not settings.REDIS_URL
    if need_db or need_redis:
        print("Starting embedded " + " and ".join(
            name for name, needed in (("PostgreSQL", need_db), ("Redis", need_redis)) if needed)
            + " (no URL set) ...", flush=True)
    env.update(ensure_services(settings.INSTANCE_PATH, need_db=need_db, need_redis=need_redis))
    return env


def with_app_role(env: dict) -> dict:
    """After the migrations (run as the owner, DATABASE_URL): create and grant the app's own role
    (APP_DB_ROLE, default ``clinic_app``; its password kept in the instance folder) with
    ``flask grant-app-role``, and return ``env`` with DATABASE_APP_URL pointing at it, so the web
    server, the worker and the seed connect as a role that owns nothing, as in production. An
    environment that names DATABASE_APP_URL itself is returned unchanged."""
    if env.get("DATABASE_APP_URL"):
        return env
    from sqlalchemy.engine import make_url

    from app.settings import ROOT as APP_ROOT, _instance_secret

    role = env.get("APP_DB_ROLE") or "clinic_app"
    password = _instance_secret(Path(env.get("INSTANCE_PATH") or APP_ROOT / "instance"), "db_app_password")
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "grant-app-role", role,
                    "--password-env", "APP_DB_PASSWORD"], cwd=ROOT, env=dict(env, APP_DB_PASSWORD=password),
                   check=True)
    url = make_url(env["DATABASE_URL"]).set(username=role, password=password)
    return dict(env, DATABASE_APP_URL=url.render_as_string(hide_password=False))


def seeded_logins() -> list[tuple[str, str, str]]:
    """(role, email, password) of every account the demo seed creates."""
    from app.services.seed import DEMO_ACCOUNTS, DEMO_PASSWORD, PROVIDERS

    logins = [(role, email, DEMO_PASSWORD) for role, email, *_ in DEMO_ACCOUNTS]
    known = {email for _, email, _ in logins}
    logins += [("provider", email, DEMO_PASSWORD) for email, *_ in PROVIDERS if email not in known]
    return logins


def banner(url: str, logins, *, stripe_sandbox: str | None = None, payer_sandbox: str | None = None) -> str:
    """What make run prints once everything is up: the portal's URL is the last line, alone."""
    lines = [""]
    if stripe_sandbox:
        lines.append(f"  Stripe sandbox (offline Stripe the app talks to; not the portal): {stripe_sandbox}")
    if payer_sandbox:
        lines.append(f"  Payer simulator (stands in for a clearinghouse; not the portal): {payer_sandbox}")
    lines.append("  Demo logins:")
    width = max((len(email) for _, email, _ in logins), default=0)
    lines += [f"    {role:<9} {email:<{width}}  password: {password}" for role, email, password in logins]
    lines += ["  Staff accounts set up an authenticator app (two-step sign-in) at their first sign-in."]
    lines += ["", "  Ctrl-C stops everything. Clinic Portal is up at:", url]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from app.settings import Settings

    args = sys.argv[1:] if argv is None else argv
    dev_server = bool(args) and args[0] == "--dev"
    if dev_server:
        args = args[1:]
    if args and args[0].startswith("-"):
        print(__doc__.split("\n\n")[-1].rstrip())
        return 0 if args[0] in ("-h", "--help") else 2
    settings = Settings.from_env()
    if settings.is_production:
        print("make run is for development; production runs wsgi.py and worker.py itself.")
        return 2
    env = service_env(settings)
    if args:                                # one command with the services, e.g. flask audit verify
        command = [sys.executable, "-m", "flask", "--app", "wsgi", *args[1:]] if args[0] == "flask" else args
        return subprocess.run(command, cwd=ROOT, env=env).returncode
    port = free_port(int(os.environ.get("PORT", "5000")))
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")     # links in messages point here
    sandbox = None
    if not settings.STRIPE_SECRET_KEY:
        from devtools.stripe_sandbox.process import SandboxProcess

        sandbox = SandboxProcess.start(settings.INSTANCE_PATH / "stripe_sandbox",
                                       webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe")
        env.update(STRIPE_SECRET_KEY=sandbox.secret_key, STRIPE_PUBLISHABLE_KEY=sandbox.publishable_key,
                   STRIPE_WEBHOOK_SECRET=sandbox.webhook_secret, STRIPE_API_BASE=sandbox.api_base,
                   STRIPE_JS_URL=sandbox.js_url)
    payer = None
    try:
        if not settings.CLEARINGHOUSE_URL:
            from devtools.payer_sandbox import PayerSandboxProcess

            payer = PayerSandboxProcess.start(settings.INSTANCE_PATH / "payer_sandbox",
                                              delay_seconds=settings.PAYER_ADJUDICATION_DELAY.total_seconds())
            env.update(CLEARINGHOUSE_URL=payer.api_base, CLEARINGHOUSE_API_KEY=payer.api_key)
        return serve(env, port, stripe_sandbox=sandbox.api_base if sandbox else None,
                     payer_sandbox=payer.api_base if payer else None, dev_server=dev_server)
    finally:
        if payer is not None:
            payer.stop()
        if sandbox is not None:
            sandbox.stop()


def wait_until_up(port: int, worker: subprocess.Popen, children, redis_url: str, *,
                  give_up=lambda: False, timeout: float = READY_TIMEOUT) -> bool:
    """True once the web server accepts connections and the worker has registered with Redis."""
    import redis
    from rq import Worker

    deadline = time.monotonic() + timeout
    web_up = worker_up = False
    conn = redis.Redis.from_url(redis_url)
    try:
        while time.monotonic() < deadline:
            if give_up() or any(child.poll() is not None for child in children):
                return False
            if not web_up:
                with socket.socket() as probe:
                    web_up = probe.connect_ex(("127.0.0.1", port)) == 0
            if not worker_up:
                try:
                    worker_up = any(w.pid == worker.pid for w in Worker.all(connection=conn))
                except redis.RedisError:
                    pass
            if web_up and worker_up:
                time.sleep(0.5)          # let both finish their start-up lines
                return True
            time.sleep(0.2)
    finally:
        conn.close()
    return False


def web_command(port: int, *, dev_server: bool = False) -> list[str]:
    """The web server make run starts: gunicorn with the checked-in config, as in production
    (only bound to 127.0.0.1), or with ``dev_server`` Flask's reloading development server."""
    if dev_server:
        return [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--host", "127.0.0.1",
                "--port", str(port), "--reload", "--no-debugger"]
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG),
            "--bind", f"127.0.0.1:{port}", "wsgi:app"]


def serve(env: dict, port: int, *, stripe_sandbox: str | None = None, payer_sandbox: str | None = None,
          dev_server: bool = False) -> int:
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True)
    env = with_app_role(env)            # from here on the app connects as its role, owning nothing
    seeded = subprocess.run(flask + ["seed"], cwd=ROOT, env=env, capture_output=True, text=True)
    if seeded.returncode != 0:
        sys.stdout.write(seeded.stdout)
        sys.stderr.write(seeded.stderr)
        return seeded.returncode

    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env)
    children = [
        worker,
        subprocess.Popen(web_command(port, dev_server=dev_server), cwd=ROOT, env=env),
    ]
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if wait_until_up(port, worker, children, env["REDIS_URL"], give_up=lambda: stopping):
            print(banner(f"http://127.0.0.1:{port}/", seeded_logins(), stripe_sandbox=stripe_sandbox,
                         payer_sandbox=payer_sandbox),
                  end="", flush=True)
        elif not stopping and all(child.poll() is None for child in children):
            print(f"Still not up after {READY_TIMEOUT:.0f} s; stopping.", flush=True)
            stopping = True
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("A process exited; stopping the rest.", flush=True)
                break
            time.sleep(0.3)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        print("Stopped the web server, the worker and the sandboxes; "
              "the embedded services stop with this process.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
