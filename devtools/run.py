"""The run command (``make run``): everything the portal needs, in one terminal.

1. starts the embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL
   are set (devtools/embedded.py), and the Stripe sandbox unless
   STRIPE_SECRET_KEY is set (devtools/stripe_sandbox);
2. applies the migrations and seeds the demo clinic (once);
3. starts the RQ worker (with its scheduler) and the web server;
4. prints the URL and the demo logins, and waits.

Ctrl-C (or SIGTERM) stops every process it started and the embedded services.
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


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def main() -> int:
    from app.settings import Settings
    from devtools.embedded import ensure_services

    settings = Settings.from_env()
    if settings.is_production:
        print("make run is for development; production runs wsgi.py and worker.py itself.")
        return 2
    env = dict(os.environ, APP_ENV=settings.APP_ENV, PYTHONUNBUFFERED="1")
    print("Starting embedded services where no URL is set ...", flush=True)
    env.update(ensure_services(settings.INSTANCE_PATH, need_db=not settings.DATABASE_URL,
                               need_redis=not settings.REDIS_URL))
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
        print(f"Stripe sandbox (offline Stripe) at {sandbox.api_base}", flush=True)
    try:
        return serve(env, port)
    finally:
        if sandbox is not None:
            sandbox.stop()


def serve(env: dict, port: int) -> int:
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True)
    subprocess.run(flask + ["seed"], cwd=ROOT, env=env, check=True)

    children = [
        subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env),
        subprocess.Popen(flask + ["run", "--host", "127.0.0.1", "--port", str(port), "--no-debugger"],
                         cwd=ROOT, env=env),
    ]
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(1.5)
    print(f"\n  Clinic Portal is up: http://127.0.0.1:{port}/   (Ctrl-C stops everything)\n", flush=True)
    try:
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
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        print("Stopped the web server, the worker and the Stripe sandbox; "
              "the embedded services stop with this process.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
