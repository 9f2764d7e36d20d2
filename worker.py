"""The RQ worker, with RQ's scheduler on (for enqueue_at / enqueue_in).

    python worker.py            # all queues of this deployment

Settings come from the environment, DATABASE_URL and REDIS_URL included
(``make run`` sets them for the worker it starts).

A small ticker thread enqueues the periodic sweep (app.jobs.periodic.sweep)
every SWEEP_INTERVAL; the sweep is idempotent, so two workers ticking is fine.
"""
from __future__ import annotations

import logging
import threading

from rq import Worker

from app import create_app
from app.jobs import QUEUES, get_queue, redis_connection, set_app
from app.jobs.periodic import sweep

log = logging.getLogger("worker")


def ticker(app, stop: threading.Event) -> None:
    interval = app.config["SETTINGS"].SWEEP_INTERVAL.total_seconds()
    while not stop.wait(interval):
        try:
            with app.app_context():
                get_queue("default", app).enqueue(sweep, result_ttl=600)
        except Exception:   # Redis briefly away: try again next tick
            log.exception("could not enqueue the periodic sweep")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app()
    set_app(app)
    stop = threading.Event()
    threading.Thread(target=ticker, args=(app, stop), daemon=True, name="sweep-ticker").start()
    with app.app_context():
        queues = [get_queue(name, app) for name in QUEUES]
        worker = Worker(queues, connection=redis_connection(app))
    try:
        worker.work(with_scheduler=True)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
