"""worker.py as it runs in production, in real processes: it outlives a Redis restart (worker,
scheduler and sweep ticker), runs jobs in its own process (or in its pool's processes), retries
a job whose worker was killed, and a job whose PostgreSQL connection died. Each test has a
private Redis (devtools/embedded.py) it may restart; the database is the run's test database.
Each takes a few seconds (worker start-up is most of it)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from rq import Queue, Retry, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from app.jobs import probe

ROOT = Path(__file__).resolve().parents[2]


class PrivateRedis:
    """A redis-server of this test's own, on a unix socket; restart() keeps the socket's path."""

    def __init__(self, data_dir: Path):
        from devtools.embedded import start_redis

        self.data_dir, self._start = data_dir, start_redis
        self.server = start_redis(data_dir)
        self.url = self.server.url

    def restart(self, down_for: float) -> None:
        self.server.stop()
        time.sleep(down_for)
        self.start()

    def start(self) -> None:
        self.server = self._start(self.data_dir)
        assert self.server.url == self.url

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def private_redis(tmp_path_factory):
    server = PrivateRedis(tmp_path_factory.mktemp("r"))      # short: a unix socket's path is limited
    yield server
    server.stop()


@pytest.fixture
def client(private_redis):
    conn = redis.Redis.from_url(private_redis.url, socket_connect_timeout=2)
    yield conn
    conn.close()


@pytest.fixture
def start_worker(app, private_redis, tmp_path):
    """Start ``python worker.py`` (its own process group) against the private Redis."""
    settings = app.config["SETTINGS"]
    started = []

    def start(**extra) -> subprocess.Popen:
        env = dict(os.environ, APP_ENV="test", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
                   REDIS_URL=private_redis.url, REDIS_NAMESPACE=settings.REDIS_NAMESPACE,
                   SECRET_KEY=settings.SECRET_KEY, AUDIT_HMAC_KEY=settings.AUDIT_HMAC_KEY,
                   INSTANCE_PATH=str(tmp_path), SWEEP_INTERVAL_SECONDS="3600", WORKER_BACKOFF_MAX_SECONDS="1",
                   STRIPE_SECRET_KEY=settings.STRIPE_SECRET_KEY or "", STRIPE_API_BASE=settings.STRIPE_API_BASE,
                   STRIPE_PUBLISHABLE_KEY=settings.STRIPE_PUBLISHABLE_KEY or "",
                   STRIPE_WEBHOOK_SECRET=settings.STRIPE_WEBHOOK_SECRET or "")
        env.update(extra)
        log = open(tmp_path / f"worker{len(started)}.log", "w")
        proc = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name
        started.append((proc, log))
        return proc

    yield start
    for proc, _ in started:
        if proc.poll() is None:
            proc.terminate()
    for proc, log in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:                                  # anything left in its group (a scheduler process)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except redis.ConnectionError:
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}) while waiting for {what}:\n"
                                 + Path(proc.log_path).read_text()[-3000:])
        time.sleep(0.1)
    logs = Path(proc.log_path).read_text()[-3000:] if proc is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def queue_of(app, conn) -> Queue:
    return Queue(f"{app.config['SETTINGS'].REDIS_NAMESPACE}:default", connection=conn)


def worker_pids(conn) -> set[int]:
    return {w.pid for w in Worker.all(connection=conn)}


def entries(conn, key) -> list[str]:
    return [e.decode() for e in conn.lrange(key, 0, -1)]


def done_pids(conn, key) -> list[int]:
    return [int(e.split(":")[1]) for e in entries(conn, key) if e.startswith("done:")]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                pass
    return members


def test_worker_outlives_a_redis_restart_and_runs_jobs_enqueued_after_it(app, private_redis, client,
                                                                        start_worker):
    proc = start_worker(SWEEP_INTERVAL_SECONDS="1")
    wait_until(lambda: proc.pid in worker_pids(client), 20, "the worker to register", proc)
    queue = queue_of(app, client)
    before = f"probe:{uuid.uuid4().hex}"
    queue.enqueue(probe, before)
    wait_until(lambda: done_pids(client, before), 10, "a job before the restart", proc)

    private_redis.restart(down_for=3)           # everything in Redis is gone with it, too
    time.sleep(1)
    assert proc.poll() is None, Path(proc.log_path).read_text()[-3000:]

    after, later = f"probe:{uuid.uuid4().hex}", f"probe:{uuid.uuid4().hex}"
    queue.enqueue(probe, after)
    queue.enqueue_in(timedelta(seconds=1), probe, later)          # the scheduler is back too
    wait_until(lambda: done_pids(client, after) == [proc.pid], 20, "a job enqueued after the restart", proc)
    wait_until(lambda: done_pids(client, later), 20, "a scheduled job after the restart", proc)
    # the ticker enqueued a sweep on the new Redis, and the worker registered itself again
    wait_until(lambda: any(job and job.func_name == "app.jobs.periodic.sweep" for job in
                           queue.job_class.fetch_many(FinishedJobRegistry(queue=queue).get_job_ids()
                                                      + FailedJobRegistry(queue=queue).get_job_ids(),
                                                      connection=client)),
               20, "a sweep after the restart", proc)
    wait_until(lambda: proc.pid in worker_pids(client), 10, "the worker to register again", proc)
    log = Path(proc.log_path).read_text()
    assert "Redis unavailable" in log and "Redis is back" in log
    assert "sweep ticker: Redis unavailable" in log or "sweep ticker: Redis is back" in log
    assert proc.poll() is None


def test_worker_started_while_redis_is_down_waits_for_it_and_stops_when_asked(app, private_redis, client,
                                                                            start_worker):
    private_redis.stop()
    proc = start_worker()
    # Start-up (the app, its imports) takes seconds on a busy machine: wait until it has met the
    # missing Redis, then give it a few back-off rounds to prove it keeps waiting.
    wait_until(lambda: "Redis unavailable during start-up" in Path(proc.log_path).read_text(), 30,
               "the worker to find Redis away", proc)
    time.sleep(2)
    assert proc.poll() is None, Path(proc.log_path).read_text()[-3000:]
    private_redis.start()
    wait_until(lambda: proc.pid in worker_pids(client), 15, "the worker to register", proc)
    key = f"probe:{uuid.uuid4().hex}"
    queue_of(app, client).enqueue(probe, key)
    wait_until(lambda: done_pids(client, key) == [proc.pid], 10, "a job", proc)
    private_redis.stop()                       # a stop request is obeyed with Redis away, too
    time.sleep(1)
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert "Redis unavailable during start-up" in Path(proc.log_path).read_text()


def test_jobs_run_in_the_worker_process_without_a_fork_per_job(app, client, start_worker):
    proc = start_worker()
    wait_until(lambda: proc.pid in worker_pids(client), 20, "the worker to register", proc)
    queue = queue_of(app, client)
    key = f"probe:{uuid.uuid4().hex}"
    queue.enqueue(probe, key)
    queue.enqueue(probe, key, db=True)              # through job_session, PostgreSQL included
    wait_until(lambda: len(done_pids(client, key)) == 2, 15, "two jobs", proc)
    assert done_pids(client, key) == [proc.pid, proc.pid]


def test_a_worker_pool_runs_jobs_in_its_own_long_lived_processes(app, client, start_worker):
    proc = start_worker(WORKER_PROCESSES="2")
    pool = wait_until(lambda: len(pids := worker_pids(client)) == 2 and pids, 25, "two pool workers", proc)
    assert proc.pid not in pool and all(parent_of(pid) == proc.pid for pid in pool)
    queue = queue_of(app, client)
    key = f"probe:{uuid.uuid4().hex}"
    for n in range(6):
        queue.enqueue(probe, key, 0.1, db=bool(n % 2))
    wait_until(lambda: len(done_pids(client, key)) == 6, 20, "six jobs", proc)
    ran = done_pids(client, key)
    assert set(ran) <= pool                            # six jobs, at most two processes: no fork per job
    assert worker_pids(client) == pool                 # and the same two are still there


def test_a_job_killed_with_its_worker_is_retried_by_the_next_worker(app, client, start_worker):
    first = start_worker()
    wait_until(lambda: first.pid in worker_pids(client), 20, "the first worker to register", first)
    queue = queue_of(app, client)
    key = f"probe:{uuid.uuid4().hex}"
    job = queue.enqueue(probe, key, 2)
    wait_until(lambda: f"start:{first.pid}" in entries(client, key), 10, "the job to start", first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=5)
    assert job.get_status() == "started"              # left behind in the StartedJobRegistry
    # the first worker's scheduler process notices its worker is gone and stops
    wait_until(lambda: not group_members(first.pid), 10, "the dead worker's scheduler to stop")

    second = start_worker()
    wait_until(lambda: done_pids(client, key) == [second.pid], 20, "the job to run again", second)
    wait_until(lambda: job.get_status() == "finished", 5, "RQ to record it finished", second)
    job.refresh()
    assert job.retries_left == len(app.config["SETTINGS"].JOB_RETRY_DELAYS) - 1
    assert entries(client, key) == [f"start:{first.pid}", f"start:{second.pid}", f"done:{second.pid}"]
    assert job.id not in queue.started_job_registry.get_job_ids()
    assert "requeued (its worker" in Path(second.log_path).read_text()


def test_a_job_whose_postgresql_connection_dies_fails_and_is_retried(app, client, start_worker):
    proc = start_worker()
    wait_until(lambda: proc.pid in worker_pids(client), 20, "the worker to register", proc)
    queue = queue_of(app, client)
    key = f"probe:{uuid.uuid4().hex}"
    job = queue.enqueue(probe, key, 3, db=True, retry=Retry(max=2))
    wait_until(lambda: entries(client, key), 10, "the job to start", proc)
    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        # as in a PostgreSQL restart: the server ends the worker's connection under the job
        killed = wait_until(lambda: conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE '%pg_sleep%'").fetchall(), 10, "the job's query")
    assert killed == [(True,)]
    wait_until(lambda: done_pids(client, key), 20, "the retry to finish", proc)
    wait_until(lambda: job.get_status() == "finished", 5, "RQ to record it finished", proc)
    job.refresh()
    assert job.retries_left == 1
    assert entries(client, key) == [f"start:{proc.pid}", f"start:{proc.pid}", f"done:{proc.pid}"]
    assert proc.poll() is None
