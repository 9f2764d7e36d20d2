"""The RQ worker runs jobs from this deployment's queues, in its own process (no fork per job).
Outages, pools and killed jobs, with real worker processes: test_worker_outages.py."""
import os

from rq import Retry, SimpleWorker

from app.jobs import default_retry, enqueue, get_queue, probe, redis_connection, set_app
from app.jobs.periodic import sweep
from app.services import audit
from app.services.audit import Actor
from worker import Backoff, ClinicWorker


def test_worker_runs_the_periodic_sweep_in_its_own_process(app, db, caplog):
    audit.record(db, actor=Actor.system("test"), action="test.event")
    db.commit()
    set_app(app)
    queue = get_queue("default", app)
    assert queue.name == f"{app.config['SETTINGS'].REDIS_NAMESPACE}:default"
    job = queue.enqueue(sweep)
    pid_job = queue.enqueue(probe, f"{queue.name}:probe-test")
    worker = ClinicWorker([queue], connection=redis_connection(app))
    assert isinstance(worker, SimpleWorker)
    assert worker.work(burst=True)
    pid_job.refresh()
    assert pid_job.return_value() == os.getpid()        # ran here: no work-horse was forked
    redis_connection(app).delete(f"{queue.name}:probe-test")
    job.refresh()
    assert job.is_finished, job.latest_result().exc_string if job.latest_result() else job.get_status()
    result = job.return_value()
    # The money step (app/jobs/money.py) reconciles yesterday's ledger with Stripe once per day, whose
    # run is itself audited: counted apart.
    ledger_runs = result.pop("ledger_reconciled", 0)
    assert {k for k in result if k.startswith("ledger_")} <= {"ledger_matched", "ledger_mismatched"}
    result = {k: v for k, v in result.items() if not k.startswith("ledger_")}
    assert result == {"audit_head": 1 + ledger_runs, "holds_released": 0, "messages": 0, "events": 0,
                      "captures": 0, "released": 0,
                      "alerts": {"alerts_raised": 0, "alerts_settled": 0}, "refunds": 0}


def test_scheduled_job_runs_when_due(app, db):
    from datetime import timedelta

    set_app(app)
    queue = get_queue("default", app)
    job = queue.enqueue_in(timedelta(seconds=0), sweep)
    worker = SimpleWorker([queue], connection=redis_connection(app))
    worker.work(burst=True, with_scheduler=True)
    job.refresh()
    assert job.get_status() in ("finished", "queued")
    if job.get_status() == "queued":      # moved by the scheduler; one more pass runs it
        worker.work(burst=True)
        job.refresh()
    assert job.is_finished


def test_jobs_enqueued_through_app_jobs_carry_the_retry_policy(app, db):
    with app.app_context():
        job = enqueue(probe, "unused")
        assert job.retries_left == len(app.config["SETTINGS"].JOB_RETRY_DELAYS)
        assert job.retry_intervals == list(app.config["SETTINGS"].JOB_RETRY_DELAYS)
        assert isinstance(default_retry(), Retry)
        mine = enqueue(probe, "unused", retry=Retry(max=1))
        assert mine.retries_left == 1
        job.delete()
        mine.delete()


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(cap=3)
    assert [backoff.next() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    assert backoff.reset() and not backoff.reset()
    assert backoff.next() == 0.5
