"""The RQ worker, with RQ's scheduler on (for enqueue_at / enqueue_in).

    python worker.py            # all queues of this deployment

Settings come from the environment, DATABASE_URL and REDIS_URL included
(``make run`` sets them for the worker it starts).

Jobs run in the worker's own process: ``ClinicWorker`` is RQ's SimpleWorker (no
fork per job). WORKER_PROCESSES > 1 runs that many of them under RQ's
WorkerPool (one forked process each, each with its own Redis and SQLAlchemy
connection pools). Each worker process also runs a ticker thread that enqueues
the periodic sweep (app.jobs.periodic.sweep) every SWEEP_INTERVAL; a short Redis
lock keeps it to one sweep per interval however many workers tick.

Outages. While Redis is away (connection refused or reset, timeouts) the
worker, its scheduler process and the ticker retry with capped exponential
backoff (up to WORKER_BACKOFF_MAX) and log it, instead of exiting; once Redis is
back the worker registers again if Redis lost its data, and the ticker
enqueues a sweep at once (the database says what is due). A job that fails,
a PostgreSQL outage say, is retried by RQ (app.jobs gives every job a Retry).
A job whose worker died under it (kill -9, OOM) stays "started" in RQ's
StartedJobRegistry: every worker requeues such jobs on start-up and at each
maintenance pass (every minute), counting it against the job's retries.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from rq import SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import InvalidJobOperation, NoSuchJobError, StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.logutils import setup_loghandlers
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.utils import as_text, parse_composite_key
from rq.version import VERSION
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

log = logging.getLogger("worker")

# What "Redis is away" looks like to redis-py (BusyLoadingError, a restart still loading its
# data, is a ConnectionError too).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Backoff:
    """Capped exponential backoff: 0.5, 1, 2, 4 ... seconds, never more than ``cap``."""

    def __init__(self, cap: float, first: float = 0.5):
        self.cap, self.first, self.failures = max(cap, first), first, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay

    def reset(self) -> bool:
        """Back to the first delay; True when there had been failures."""
        failed, self.failures = self.failures > 0, 0
        return failed


def _reason(exc: BaseException) -> str:
    """What went wrong, for the log: the error's class and redis-py's message (an address, no data)."""
    return f"{type(exc).__name__}: {exc}"


class ResilientScheduler(RQScheduler):
    """RQ's scheduler loop (its own process), which rides out Redis outages instead of dying,
    and stops when the worker that forked it is gone (so a killed worker leaves no orphan)."""

    backoff_cap = 30.0

    def request_stop(self, signum=None, frame=None):
        self._stop_requested = True

    def _nap(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            if os.getppid() != self._parent:
                self.log.warning("Scheduler [PID %s]: its worker is gone; stopping", os.getpid())
                self._stop_requested = True
                return
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def work(self):
        self._install_signal_handlers()
        self._parent = os.getppid()
        backoff = Backoff(self.backoff_cap)
        registered = False
        while not self._stop_requested:
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()           # re-acquires a lock Redis lost in a restart
                self.enqueue_scheduled_jobs()
                if backoff.reset():
                    self.log.info("Scheduler [PID %s]: Redis is back", os.getpid())
                delay = self.interval
            except REDIS_DOWN as exc:
                registered = False         # a restarted Redis may have lost our metadata
                self._scheduled_job_registries = []
                delay = backoff.next()
                self.log.warning("Scheduler [PID %s]: Redis unavailable (%s); retrying in %.1f s",
                                 os.getpid(), _reason(exc), delay)
            self._nap(delay)
        try:
            self.stop()
        except REDIS_DOWN as exc:
            self.log.warning("Scheduler [PID %s]: could not release its locks (%s); they expire",
                             os.getpid(), _reason(exc))


class ClinicWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs run in this process), made to outlive Redis outages, to requeue
    the jobs of dead workers, and to run the sweep ticker. Usable as a WorkerPool's worker class.

    ``app`` (set by main) gives the settings and the ticker; without it (tests running a burst)
    there is no ticker and the defaults below apply.
    """

    app = None
    backoff_cap = 30.0
    retry_budget = 3                # retries a killed job gets when it was enqueued without any

    def __init__(self, *args, **kwargs):
        # A blocking dequeue returns every minute (not every 7), so maintenance, and with it the
        # requeueing of abandoned jobs and the scheduler's restart, runs about every minute.
        kwargs.setdefault("worker_ttl", 75)
        kwargs.setdefault("maintenance_interval", 60)
        super().__init__(*args, **kwargs)
        if self.app is not None:
            settings = self.app.config["SETTINGS"]
            self.backoff_cap = settings.WORKER_BACKOFF_MAX.total_seconds()
            self.retry_budget = len(settings.JOB_RETRY_DELAYS)
        self.max_connection_wait_time = self.backoff_cap      # RQ's own dequeue backoff, same cap
        self._ticker_stop = threading.Event()

    # -- Redis outages ---------------------------------------------------------------------

    def _set_ip_address(self, connection):
        try:
            super()._set_ip_address(connection)
        except REDIS_DOWN:
            self.ip_address = "unknown"

    def _nap(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop_requested:
                raise StopRequested()
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _wait_for_redis(self, error: BaseException, during: str, *, reregister: bool = True) -> None:
        """Block until Redis answers again, backing off; then register again if Redis lost us."""
        backoff = Backoff(self.backoff_cap)
        while True:
            delay = backoff.next()
            self.log.warning("Worker %s: Redis unavailable during %s (%s); retrying in %.1f s",
                             self.name, during, _reason(error), delay)
            self._nap(delay)
            try:
                self.connection.ping()
                if reregister:
                    self._ensure_registered()
            except REDIS_DOWN as exc:
                error = exc
                continue
            self.log.info("Worker %s: Redis is back", self.name)
            return

    def _until_redis(self, fn, during: str, *, reregister: bool = True):
        while True:
            try:
                return fn()
            except REDIS_DOWN as exc:
                self._wait_for_redis(exc, during, reregister=reregister)

    def _ensure_registered(self) -> None:
        """A Redis restart without persistence forgets this worker: register it again."""
        if self.connection.hexists(self.key, "birth"):
            return
        self.log.warning("Worker %s: Redis lost this worker's registration; registering again", self.name)
        self.connection.delete(self.key)
        self.register_birth()
        self.set_state(self.get_state())

    def bootstrap(self, logging_level="INFO", date_format=DEFAULT_LOGGING_DATE_FORMAT,
                  log_format=DEFAULT_LOGGING_FORMAT):
        """RQ's bootstrap, each Redis step retried until Redis answers."""
        setup_loghandlers(logging_level, date_format, log_format, name="rq.worker")
        setup_loghandlers(logging_level, date_format, log_format, name="rq.job")

        def register():
            self.connection.delete(self.key)      # our own name: a stale registration of ours
            self.register_birth()

        self._until_redis(register, "start-up", reregister=False)
        self.log.info("Worker %s: started with PID %d, version %s", self.name, os.getpid(), VERSION)
        self._until_redis(self.subscribe, "start-up", reregister=False)
        self._until_redis(lambda: self.set_state(WorkerStatus.STARTED), "start-up")
        self.log.info("*** Listening on %s...", ", ".join(self.queue_names()))

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline=pipeline)

        def beat():
            with self.connection.pipeline() as pipe:
                super(ClinicWorker, self).heartbeat(timeout, pipeline=pipe)
                pipe.hexists(self.key, "birth")
                if not pipe.execute()[-1]:
                    self._ensure_registered()

        self._until_redis(beat, "the heartbeat")

    def check_for_suspension(self, burst: bool):
        return self._until_redis(lambda: super(ClinicWorker, self).check_for_suspension(burst),
                                 "the suspension check")

    def set_shutdown_requested_date(self):
        try:
            super().set_shutdown_requested_date()
        except REDIS_DOWN:
            pass                    # only informational; the stop itself does not need Redis

    def run_maintenance_tasks(self):
        try:
            self.requeue_abandoned_jobs()
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self._wait_for_redis(exc, "maintenance")       # runs again on the next pass

    def execute_job(self, job: Job, queue: Queue):
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # The job may have run, but its outcome could not be recorded: run it again.
            self._wait_for_redis(exc, f"job {job.id}")
            self._until_redis(lambda: self._requeue_interrupted(job, queue), f"requeueing job {job.id}")
            self._until_redis(lambda: self.set_state(WorkerStatus.IDLE), "the state update")

    def perform_job(self, job: Job, queue: Queue, execution) -> bool:
        if self.app is None:
            return super().perform_job(job, queue, execution)
        from app.jobs import job_context

        with job_context():                 # each job in an app context of its own
            return super().perform_job(job, queue, execution)

    def _start_scheduler(self, burst=False, logging_level="INFO", date_format=DEFAULT_LOGGING_DATE_FORMAT,
                         log_format=DEFAULT_LOGGING_FORMAT):
        """RQ's, with the ResilientScheduler; Redis away at start-up leaves it to maintenance."""
        self.scheduler = ResilientScheduler(
            self.queues, connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format, log_format=log_format, serializer=self.serializer)
        self.scheduler.backoff_cap = self.backoff_cap
        try:
            self.scheduler.acquire_locks()
            if not self.scheduler.acquired_locks:
                return
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()
        except REDIS_DOWN as exc:
            self.log.warning("Worker %s: scheduler not started, Redis unavailable (%s); maintenance "
                             "starts it later", self.name, _reason(exc))

    def teardown(self):
        self._ticker_stop.set()
        if self.is_horse:
            return
        if self.scheduler:
            self.stop_scheduler()
        try:
            self.register_death()
        except REDIS_DOWN as exc:
            self.log.warning("Worker %s: could not register its death (%s); its key expires",
                             self.name, _reason(exc))
        try:
            self.unsubscribe()
        except REDIS_DOWN:
            if self.pubsub_thread is not None:
                self.pubsub_thread.stop()

    # -- jobs of dead workers ----------------------------------------------------------------

    def _worker_is_gone(self, worker_name: str) -> bool:
        """Gone: no such worker in Redis, registered dead, or (same host) its process is gone."""
        if not worker_name:
            return True
        hostname, pid, death = self.connection.hmget(self.redis_worker_namespace_prefix + worker_name,
                                                     "hostname", "pid", "death")
        if death is not None or (hostname is None and pid is None):
            return True
        if as_text(hostname) == socket.gethostname() and pid:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError):
                return False
        return False

    def requeue_abandoned_jobs(self) -> int:
        """Requeue the jobs left "started" by workers that died while running them.

        RQ itself only gives up on such a job once its execution expires (the job's timeout +
        60 s after it started) and then fails it unless it has retries left; here a dead worker
        on this host is seen at once (its pid is gone), one elsewhere once its key expires.
        The ZREM claims each entry, so two workers never both requeue one job.
        """
        requeued = 0
        for queue in self.queues:
            registry = queue.started_job_registry
            for entry in self.connection.zrange(registry.key, 0, -1):
                composite_key = as_text(entry)
                job_id, execution_id = parse_composite_key(composite_key)
                execution = Execution(id=execution_id, job_id=job_id, connection=self.connection)
                worker_name = as_text(self.connection.hget(execution.key, "worker_name") or b"")
                if worker_name == self.name or not self._worker_is_gone(worker_name):
                    continue
                if not self.connection.zrem(registry.key, composite_key):
                    continue                                   # another worker took it
                if self._requeue(job_id, queue, [composite_key], f"its worker {worker_name or '?'} died"):
                    requeued += 1
                if worker_name:
                    key = self.redis_worker_namespace_prefix + worker_name
                    with self.connection.pipeline() as pipe:
                        pipe.hset(key, "death", "abandoned")
                        pipe.expire(key, 60)
                        pipe.execute()
        return requeued

    def _requeue_interrupted(self, job: Job, queue: Queue) -> None:
        prefix = f"{job.id}:"
        entries = [as_text(e) for e in self.connection.zrange(queue.started_job_registry.key, 0, -1)]
        mine = [e for e in entries if e.startswith(prefix)]
        for entry in mine:
            self.connection.zrem(queue.started_job_registry.key, entry)
        self._requeue(job.id, queue, mine, "Redis went away while it ran")

    def _requeue(self, job_id: str, queue: Queue, composite_keys: list[str], why: str) -> bool:
        try:
            job = queue.fetch_job(job_id)
            status = job.get_status(refresh=True) if job is not None else None
        except (NoSuchJobError, InvalidJobOperation):
            job = status = None
        with self.connection.pipeline() as pipe:
            for composite_key in composite_keys:
                _, execution_id = parse_composite_key(composite_key)
                pipe.delete(Execution(id=execution_id, job_id=job_id, connection=self.connection).key)
                pipe.zrem(ExecutionRegistry(job_id=job_id, connection=self.connection).key, execution_id)
            if job is None or status != JobStatus.STARTED:
                pipe.execute()           # finished, failed, or lost with Redis's data: nothing to run
                return False
            if job.retries_left is None:
                job.retries_left = self.retry_budget
            if job.retries_left > 0:
                job.retries_left -= 1
                queue._enqueue_job(job, pipeline=pipe, at_front=True)       # as RQ's Job.retry does
                pipe.execute()
                self.log.warning("Worker %s: job %s requeued (%s); %d retries left",
                                 self.name, job.id, why, job.retries_left)
                return True
            record_job_failure(job, f"Abandoned: {why}; no retries left", pipe)
            pipe.execute()
            self.log.warning("Worker %s: job %s failed (%s) with no retries left", self.name, job.id, why)
            return False

    # -- the work loop -------------------------------------------------------------------------

    def work(self, burst=False, logging_level=None, date_format=DEFAULT_LOGGING_DATE_FORMAT,
             log_format=DEFAULT_LOGGING_FORMAT, max_jobs=None, max_idle_time=None, with_scheduler=False,
             **kwargs):
        """RQ's work loop; when it ends for any reason but a stop request (or the burst, job or
        idle limit asked for), it starts over after a backoff instead of leaving the queues."""
        if not burst:
            self._start_ticker()
        backoff = Backoff(self.backoff_cap)
        try:
            while True:
                worked = super().work(burst=burst, logging_level=logging_level, date_format=date_format,
                                      log_format=log_format, max_jobs=max_jobs, max_idle_time=max_idle_time,
                                      with_scheduler=with_scheduler, **kwargs)
                if (burst or max_jobs is not None or max_idle_time is not None
                        or self._shutdown_requested_date is not None):
                    return worked
                delay = backoff.next()
                self.log.error("Worker %s: the work loop ended unexpectedly; starting it again in %.1f s",
                               self.name, delay)
                time.sleep(delay)
                if self._shutdown_requested_date is not None:
                    return worked
                self._stop_requested = False
                self._start_ticker()
        finally:
            self._ticker_stop.set()

    def _start_ticker(self) -> None:
        self._ticker_stop = threading.Event()          # a fresh one: an old ticker may still be waking up
        if self.app is not None:
            from app.jobs import audit as audit_jobs

            threading.Thread(target=ticker, args=(self.app, self._ticker_stop), daemon=True,
                             name="sweep-ticker").start()
            # The audit chain's sequencer every AUDIT_LINK_INTERVAL (the sweep links too).
            threading.Thread(target=audit_jobs.ticker, args=(self.app, self._ticker_stop), daemon=True,
                             name="audit-link-ticker").start()
            # The remittance poll every REMITTANCE_POLL_INTERVAL (the sweep polls too when it is due).
            from app.jobs import claims as claim_jobs

            threading.Thread(target=claim_jobs.ticker, args=(self.app, self._ticker_stop), daemon=True,
                             name="remittance-poll-ticker").start()


def ticker(app, stop: threading.Event) -> None:
    """Enqueue the periodic sweep every SWEEP_INTERVAL (one per interval across workers, by a
    short lock). While Redis is away, retry with backoff, so a sweep follows soon after it is back."""
    from app.jobs import get_queue, redis_connection
    from app.jobs.periodic import sweep

    settings = app.config["SETTINGS"]
    interval = settings.SWEEP_INTERVAL.total_seconds()
    backoff = Backoff(min(settings.WORKER_BACKOFF_MAX.total_seconds(), interval))
    lock = f"{settings.REDIS_NAMESPACE}:sweep-ticker"
    delay = interval
    while not stop.wait(delay):
        try:
            with app.app_context():
                if redis_connection(app).set(lock, os.getpid(), nx=True, px=max(1, int(interval * 900))):
                    get_queue("default", app).enqueue(sweep, result_ttl=600)
            if backoff.reset():
                log.info("sweep ticker: Redis is back")
            delay = interval
        except REDIS_DOWN as exc:
            delay = backoff.next()
            log.warning("sweep ticker: Redis unavailable (%s); retrying in %.1f s", _reason(exc), delay)
        except Exception:
            log.exception("sweep ticker: could not enqueue the periodic sweep")
            delay = interval


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from app import create_app
    from app.jobs import QUEUES, queue_name, redis_connection, set_app

    app = create_app()
    set_app(app)
    ClinicWorker.app = app
    settings = app.config["SETTINGS"]
    queues = [queue_name(name, app) for name in QUEUES]
    connection = redis_connection(app)
    if settings.WORKER_PROCESSES > 1:
        # Each pool process builds its own Redis pool; its SQLAlchemy pool is its own from its first job.
        WorkerPool(queues, connection=connection, num_workers=settings.WORKER_PROCESSES,
                   worker_class=ClinicWorker).start(logging_level="INFO")
    else:
        ClinicWorker(queues, connection=connection).work(with_scheduler=True)


if __name__ == "__main__":
    main()
