"""The bare baseline the gunicorn benchmarks compare against: Flask + Flask-SQLAlchemy, one table,
``POST /rows`` inserts one row and commits, answering 201. Nothing else: no sessions, CSRF, audit,
compression or logging of its own.

Served exactly as the portal is (bench/serve.py):

    gunicorn -c gunicorn.conf.py --bind 127.0.0.1:<port> bench.baseline:app

so workers, threads, keep-alive, preload and the post_fork hook come from the same config and
environment. The post_fork hook disposes the engines of ``app.extensions.db`` for the app it
serves, so this app uses that (unbound) Flask-SQLAlchemy object too: only the app's extension
instance is shared, none of the portal's code runs per request. Database: BENCH_DATABASE_URL (the
run's scratch database), else DATABASE_URL.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, request  # noqa: E402
from sqlalchemy import BigInteger, DateTime, String, Table, Column, func  # noqa: E402

from app.extensions import db  # noqa: E402

rows = Table("bench_bare_rows", db.metadata,
             Column("id", BigInteger, primary_key=True, autoincrement=True),
             Column("note", String(200), nullable=False),
             Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False))


def create_app() -> Flask:
    flask_app = Flask(__name__)
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ["DATABASE_URL"]
    flask_app.config["SQLALCHEMY_DATABASE_URI"] = url
    db.init_app(flask_app)
    with flask_app.app_context():
        rows.create(db.engine, checkfirst=True)

    @flask_app.post("/rows")
    def insert_row():
        db.session.execute(rows.insert().values(note=request.form.get("note", "")[:200]))
        db.session.commit()
        return "", 201

    @flask_app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return flask_app


app = create_app()
