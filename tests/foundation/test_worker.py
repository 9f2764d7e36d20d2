"""The RQ worker runs jobs from this deployment's queues, in forked work-horses."""
from rq import SimpleWorker, Worker

from app.jobs import get_queue, redis_connection, set_app
from app.jobs.periodic import sweep
from app.services import audit
from app.services.audit import Actor


def test_worker_runs_the_periodic_sweep_in_a_forked_job(app, db, caplog):
    audit.record(db, actor=Actor.system("test"), action="test.event")
    db.commit()
    set_app(app)
    queue = get_queue("default", app)
    assert queue.name == f"{app.config['SETTINGS'].REDIS_NAMESPACE}:default"
    job = queue.enqueue(sweep)
    worker = Worker([queue], connection=redis_connection(app))
    assert worker.work(burst=True)
    job.refresh()
    assert job.is_finished, job.latest_result().exc_string if job.latest_result() else job.get_status()
    assert job.return_value() == {"audit_head": 1, "holds_released": 0, "messages": 0, "events": 0,
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
