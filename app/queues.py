"""The app's Redis connection and its queues' names: shared by the jobs (which enqueue on them)
and by the services and pages that report on them (the ops page, the metrics), so neither of
those has to import ``app.jobs``."""
from __future__ import annotations

from flask import Flask, current_app
from redis import Redis

QUEUES = ("default",)


def redis_connection(app: Flask | None = None) -> Redis:
    app = app or current_app
    conn = app.extensions.get("redis")
    if conn is None:
        # A bounded connect: while Redis is away a caller fails fast (the worker backs off).
        conn = app.extensions["redis"] = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=5)
    return conn


def queue_name(name: str, app: Flask | None = None) -> str:
    app = app or current_app
    return f"{app.config['SETTINGS'].REDIS_NAMESPACE}:{name}"
