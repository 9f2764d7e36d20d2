"""What the gunicorn benchmarks share: the portal and the bare baseline (bench/baseline.py) each
served by gunicorn with the checked-in gunicorn.conf.py on a free 127.0.0.1 port, the Stripe
sandbox, signing in patients, and a keep-alive load driver (threads of http.client).

Not a test; nothing here targets anything but 127.0.0.1.
"""
from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GUNICORN_CONFIG = ROOT / "gunicorn.conf.py"
HOST = "127.0.0.1"
PASSWORD = "bench-password-123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def percentile(samples, q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- servers ------------------------------------------------------------------------------------------------

class Gunicorn:
    """``gunicorn -c gunicorn.conf.py --bind 127.0.0.1:<free port> <target>``: the same config (workers,
    threads, keep-alive, preload ...) from the same environment for the portal and the baseline. Only the
    bind address is given on the command line (as make run does); logs go to a file."""

    def __init__(self, target: str, env: dict, log_path: Path, ready_path: str = "/healthz"):
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), "--bind", f"{HOST}:{self.port}",
             target], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ready_path = ready_path
        self.log_path = log_path

    def wait(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}); see {self.log_path}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status < 500:
                    time.sleep(0.3)          # let every worker finish booting
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn not up after {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)        # graceful: open requests finish
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Worker:
    """``python worker.py`` (the RQ worker with its scheduler) with the bench's environment."""

    def __init__(self, env: dict, log_path: Path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, fast: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()                 # RQ: warm shutdown (finishes the current job)
            if fast:                              # a second SIGTERM: cold shutdown (RQ's own)
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
            try:
                self.proc.wait(timeout=10 if fast else 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Stack:
    env: dict                       # the portal's environment (also the worker's)
    app: object                     # the portal's Flask app, in this process, for seeding and checks
    sandbox: object
    namespace: str
    tmp: Path
    database_url: str
    portal: Gunicorn | None = None
    bare: Gunicorn | None = None
    started: list = field(default_factory=list)

    def start_servers(self, *, portal: bool = True) -> None:
        """Both servers at once (after seeding), each waited for."""
        self.bare = Gunicorn("bench.baseline:app", {**self.env, "BENCH_DATABASE_URL": self.database_url},
                             self.tmp / "bare.log", ready_path="/healthz")
        self.started.append(self.bare)
        if portal:
            self.portal = Gunicorn("wsgi:app", self.env, self.tmp / "portal.log", ready_path="/healthz")
            self.started.append(self.portal)
        for server in self.started:
            server.wait()

    def worker(self, processes: int = 1) -> Worker:
        w = Worker({**self.env, "WORKER_PROCESSES": str(processes)}, self.tmp / "worker.log")
        self.started.append(w)
        return w


def _drop_app_role(database_url: str, role: str | None) -> None:
    """The stack's app role (devtools.run.with_app_role) goes with its scratch database."""
    if not role:
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    except Exception as error:                 # the scratch database goes anyway
        print(f"(could not drop the role {role}: {error})", file=sys.stderr)


@contextmanager
def stack(database_url: str, redis_url: str, tmp: Path, extra_env: dict | None = None):
    """The portal's environment (APP_ENV=development, i.e. not production: the sandbox's keys are
    refused there), pointed at this run's scratch database, Redis namespace and a fresh Stripe
    sandbox; migrated. Yields a Stack; on exit stops every process started and empties the
    namespace."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.settings import Settings
    from devtools.stripe_sandbox.process import SandboxProcess

    namespace = f"clinic-bench-{uuid.uuid4().hex[:8]}"
    sandbox = SandboxProcess.start(tmp / "stripe")
    env = {
        **os.environ,
        "APP_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace, "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "bench-secret", "AUDIT_HMAC_KEY": "bench-audit",
        "STRIPE_SECRET_KEY": sandbox.secret_key, "STRIPE_PUBLISHABLE_KEY": sandbox.publishable_key,
        "STRIPE_WEBHOOK_SECRET": sandbox.webhook_secret, "STRIPE_API_BASE": sandbox.api_base,
        "STRIPE_JS_URL": sandbox.js_url, "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        # Setup signs many patients in from one address; the load runs go no near these.
        "LOGIN_LIMIT_PER_ACCOUNT": "100000 per minute", "LOGIN_LIMIT_PER_ADDRESS": "100000 per minute",
        "POLL_INTERVAL_SECONDS": "3600", "SWEEP_INTERVAL_SECONDS": "3600",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    env.pop("WEB_LOG_LEVEL", None)
    app = create_app(Settings.from_env(env))
    st = Stack(env=env, app=app, sandbox=sandbox, namespace=namespace, tmp=tmp, database_url=database_url)
    try:
        with app.app_context():
            upgrade()
            db.session.remove()
        from devtools.run import with_app_role

        st.env = with_app_role({**env, "APP_DB_ROLE": f"clinic_app_{namespace[-8:]}"})   # served as production is
        yield st
    finally:
        for proc in reversed(st.started):
            try:
                proc.stop()
            except Exception as error:                 # keep stopping the rest
                print(f"(could not stop {proc}: {error})", file=sys.stderr)
        sandbox.stop()
        try:
            import redis

            conn = redis.Redis.from_url(redis_url)
            for pattern in (f"{namespace}*", f"rq:*{namespace}*", f"*{namespace}*"):
                for key in conn.scan_iter(pattern):
                    conn.delete(key)
            conn.close()
        except Exception as error:
            print(f"(could not tidy Redis: {error})", file=sys.stderr)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        _drop_app_role(database_url, st.env.get("APP_DB_ROLE"))


# -- seeding ------------------------------------------------------------------------------------------------

def seed_clinic(app, *, providers: int, patients: int, horizon_days: int = 60, all_day: bool = True):
    """An appointment type, ``providers`` providers open every day (all day), ``patients`` patients with
    no phone (email only). Returns dict(type=id, providers=[ids], patients=[emails])."""
    from datetime import time as clock_time

    from app.extensions import db
    from app.models import AppointmentType, AvailabilityRule, Provider, Specialty
    from app.services import accounts
    from app.services.audit import Actor

    with app.app_context():
        session = db.session
        visit = AppointmentType(name="Video consult", duration_minutes=30, buffer_before_minutes=0,
                                buffer_after_minutes=0, price_cents=12500, payment_timing="deposit_to_book",
                                modality="telehealth", min_notice_minutes=60, horizon_days=horizon_days,
                                cancellation_window_hours=24)
        spec = Specialty(name="Family medicine")
        session.add_all([visit, spec])
        provider_ids = []
        for i in range(providers):
            user = accounts.create_staff(session, actor=Actor.system("bench"), role="provider",
                                         full_name=f"Dr. Bench {i}", email=f"bench-provider-{i}@example.com",
                                         timezone_name="UTC", password=PASSWORD, phone=None)
            session.flush()
            provider = Provider(user_id=user.id, specialty_id=spec.id, timezone="UTC")
            provider.types = [visit]
            session.add(provider)
            session.flush()
            provider_ids.append(provider.id)
            for weekday in range(7):
                session.add(AvailabilityRule(provider_id=provider.id, weekday=weekday,
                                             start_time=clock_time(0) if all_day else clock_time(9),
                                             end_time=clock_time(23, 59) if all_day else clock_time(17)))
        emails = []
        for i in range(patients):
            email = f"bench-patient-{i}@example.com"
            accounts.register_patient(session, full_name=f"Bench Patient {i}", email=email, phone=None,
                                      timezone_name="UTC", password=PASSWORD, actor=Actor.system("bench"))
            emails.append(email)
        session.commit()
        type_id = visit.id
        session.remove()
    return {"type": type_id, "providers": provider_ids, "patients": emails}


def free_slots(app, provider_ids, type_id, days: int = 60) -> dict[int, list]:
    """Every open slot start (UTC datetimes) per provider, as the booking engine computes them."""
    from datetime import datetime, timedelta, timezone

    from app.extensions import db
    from app.models import AppointmentType, Provider
    from app.services import availability, schedule

    now = datetime.now(timezone.utc)
    with app.app_context():
        session = db.session
        found = [session.get(Provider, pid) for pid in provider_ids]
        spec = schedule.slot_type(session.get(AppointmentType, type_id))
        loaded = schedule.load_schedules(session, found, now=now, window_start=now, window_end=now + timedelta(days=days))
        out = {}
        for pid, lp in zip(provider_ids, loaded):
            out[pid] = [s.starts_at for s in availability.slots_for(lp.schedule, spec, now=now + timedelta(hours=2),
                                                                    end=now + timedelta(days=days - 1))]
        session.remove()
    return out


CSRF_META = re.compile(r'"X-CSRFToken": "([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass
class Browser:
    """A signed-in patient: the cookie header and the CSRF token the portal's pages carry."""
    cookie: str
    csrf: str


def sign_in(base: str, email: str, password: str = PASSWORD) -> Browser:
    import requests

    with requests.Session() as http:
        page = http.get(base + "/login").text
        token = CSRF_FIELD.search(page).group(1)
        answer = http.post(base + "/login", data={"email": email, "password": password, "csrf_token": token},
                           allow_redirects=False)
        if answer.status_code not in (204, 302, 303):
            raise RuntimeError(f"sign-in of {email}: {answer.status_code} {answer.text[:200]}")
        csrf = CSRF_META.search(http.get(base + "/patient").text).group(1)
        cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    return Browser(cookie=cookie, csrf=csrf)


# -- load ---------------------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection (http.client), reopened after an error or a close."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port, self.timeout = port, timeout
        self.conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, raw body bytes). Raises OSError / http.client errors after one retry."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.conn.close()
                    self.conn = None
                return resp.status, resp.headers, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()


@dataclass
class LoadResult:
    done: int             # requests answered as expected
    failed: int           # other statuses / errors
    elapsed: float        # seconds, first start to last finish
    latencies_ms: list    # of the expected answers
    statuses: dict

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def line(self, label: str, unit: str = "req/s") -> str:
        lat = self.latencies_ms
        return (f"{label}: {self.rate:8.1f} {unit}   p50 {percentile(lat, .5):7.1f} ms   p95 {percentile(lat, .95):7.1f} ms"
                f"   p99 {percentile(lat, .99):7.1f} ms   ({self.done} ok, {self.failed} failed in {self.elapsed:.1f} s)")


def run_load(port: int, make_call, *, concurrency: int, duration: float, max_requests: int | None = None,
             rate: float | None = None) -> LoadResult:
    """``concurrency`` threads, each with its own keep-alive connection, call ``make_call(client, thread_no,
    i)`` (which does one or more requests and returns (ok, status)) until ``duration`` seconds have
    passed or ``max_requests`` calls were made.

    Closed loop by default (each thread starts its next call when the last answers: capacity). With
    ``rate`` calls/s it is open loop: call i is due at start + i/rate and its latency counts from then
    (a late start is the server's delay too), so an overloaded server shows in the tail."""
    lock = threading.Lock()
    counter = iter(range(max_requests if max_requests is not None else 10**12))
    latencies: list[float] = []
    statuses: dict = {}
    done = failed = 0
    stop_at = time.perf_counter() + duration
    start = time.perf_counter()
    last_end = [start]

    def loop(n: int):
        nonlocal done, failed
        client = Client(port)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if rate:
                    due = start + i / rate
                    if due >= stop_at:
                        return
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    t0 = due
                else:
                    t0 = time.perf_counter()
                    if t0 >= stop_at:
                        return
                try:
                    ok, status = make_call(client, n, i)
                except Exception as error:           # counted, never fatal to the run
                    ok, status = False, type(error).__name__
                t1 = time.perf_counter()
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if ok:
                        done += 1
                        latencies.append((t1 - t0) * 1000)
                    else:
                        failed += 1
                    last_end[0] = max(last_end[0], t1)
        finally:
            client.close()

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    return LoadResult(done, failed, last_end[0] - start, latencies, statuses)


def bare_insert_call(client: Client, n: int, i: int):
    status, _, _ = client.request("POST", "/rows", body=b"note=bench",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    return status == 201, status


def measure_bare(st: Stack, *, concurrency: int, duration: float, label: str = "bare insert") -> LoadResult:
    """The baseline's inserts/s (closed loop), after a short warm-up."""
    run_load(st.bare.port, bare_insert_call, concurrency=concurrency, duration=1.5)
    with CpuMeter(st, "bare") as meter:
        result = run_load(st.bare.port, bare_insert_call, concurrency=concurrency, duration=duration)
    print(result.line(f"{label:>14}"), flush=True)
    print(meter.line(result.done, "insert"), flush=True)
    return result


# -- where the CPU goes -------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user+system) of a live process, from /proc (Linux)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()       # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def _cpu(pids) -> float:
    return sum(st[1] for st in map(_stat, pids) if st is not None)


class CpuMeter:
    """CPU seconds spent during a run by: the server under test (gunicorn master and workers), the
    Stripe sandbox, every PostgreSQL and Redis process of the machine, and this load-driving process.
    Processes that started and ended inside the run are not counted (none do here)."""

    def __init__(self, st: Stack, server: str):
        self.groups = {
            "server": lambda: _tree((st.portal if server == "portal" else st.bare).proc.pid),
            "sandbox": lambda: _tree(st.sandbox.proc.pid) if getattr(st.sandbox, "proc", None) else [],
            "postgres": lambda: [int(e.name) for e in Path("/proc").iterdir()
                                 if e.name.isdigit() and _comm(int(e.name)).startswith(("postgres", "postmaster"))],
            "redis": lambda: [int(e.name) for e in Path("/proc").iterdir()
                              if e.name.isdigit() and _comm(int(e.name)).startswith("redis")],
            "client": lambda: [os.getpid()],
        }
        self.used: dict[str, float] = {}

    def __enter__(self):
        self._pids = {name: find() for name, find in self.groups.items()}
        self._before = {name: _cpu(pids) for name, pids in self._pids.items()}
        return self

    def __exit__(self, *exc):
        self.used = {name: max(0.0, _cpu(self._pids[name]) - self._before[name]) for name in self._pids}
        return False

    def per(self, count: int) -> dict[str, float]:
        """CPU milliseconds per unit of work, per group."""
        return {name: (1000 * used / count if count else 0.0) for name, used in self.used.items()}

    def line(self, count: int, unit: str) -> str:
        per = self.per(count)
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in per.items() if name != "client")
        return (f"{'':>14}  CPU ms per {unit}: {parts}; all but the load driver {sum(per.values()) - per['client']:.2f} "
                f"(client {per['client']:.2f})")


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


# -- a crowd of patients taking holds (bench/hold.py, bench/booking.py) ------------------------------

# Per-patient hold limits raised for a run: the benches are a crowd, not one patient.
CROWD_LIMITS = {"MAX_HOLDS_PER_PATIENT": "1000000", "HOLDS_PER_HOUR": "1000000"}


def crowd_parser(description: str, *, duration: float):
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--concurrency", type=int, default=16, help="client connections (default 16)")
    parser.add_argument("--duration", type=float, default=duration,
                        help=f"seconds per measurement (default {duration:g})")
    parser.add_argument("--providers", type=int, default=8, help="providers whose slots are held (default 8)")
    return parser


@dataclass
class HoldCrowd:
    """``concurrency`` signed-in patients, each with its own stream of free (provider, slot) pairs
    (never shared: every hold is for a free slot)."""
    clinic: dict
    pairs: list
    streams: list
    browsers: list
    cursor: list

    @classmethod
    def seed(cls, st: Stack, *, providers: int, concurrency: int) -> "HoldCrowd":
        clinic = seed_clinic(st.app, providers=providers, patients=concurrency)
        slots = free_slots(st.app, clinic["providers"], clinic["type"])
        pairs = [(pid, s) for pid in clinic["providers"] for s in slots[pid]]
        return cls(clinic, pairs, [pairs[n::concurrency] for n in range(concurrency)], [], [0] * concurrency)

    def sign_in(self, st: Stack) -> None:
        """After ``st.start_servers()``: every patient signed in."""
        self.browsers = [sign_in(st.portal.base, email) for email in self.clinic["patients"]]

    def hold(self, client: Client, n: int):
        """Patient ``n`` holds its next free slot (htmx, as the page does): (status, headers)."""
        from urllib.parse import urlencode

        pid, starts_at = self.streams[n][self.cursor[n]]
        self.cursor[n] += 1
        b = self.browsers[n]
        body = urlencode({"type_id": self.clinic["type"], "starts_at": starts_at.isoformat()}).encode()
        status, headers, _ = client.request("POST", f"/book/providers/{pid}/holds", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": b.cookie, "X-CSRFToken": b.csrf,
            "HX-Request": "true", "Sec-Fetch-Site": "same-origin"})
        return status, headers
