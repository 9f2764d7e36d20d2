"""Logs: one JSON object per line in production (with the request id and the RQ job id), text in
development, tokens in paths redacted in both (app/logging_setup.py)."""
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from rq import SimpleWorker

from app.jobs import get_queue, redis_connection
from app.logging_setup import JsonFormatter, dress, formatter_for
from tests.helpers.web import RUN_ID

ROOT = Path(__file__).resolve().parents[2]
LOGGER = "app.tests.json_logs"


def _capture(app_env: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = dress(logging.StreamHandler(stream), app_env)
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream, handler


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_inside_a_request_carries_its_request_id(app):
    logger, stream, handler = _capture("production")
    try:
        with app.test_request_context("/"):
            from flask import g

            g.request_id = "req-123"
            logger.info("booked appointment %s via /r/%s", 42, "tok.en-secret")
        logger.info("outside any request")
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    inside, outside = _lines(stream)
    assert inside["request_id"] == "req-123" and inside["job_id"] is None
    assert inside["level"] == "INFO" and inside["logger"] == LOGGER
    assert inside["message"] == "booked appointment 42 via /r/[redacted]"
    assert "T" in inside["time"] and inside["time"].endswith("+00:00")
    assert outside["request_id"] is None


def log_from_a_job(word: str) -> str:
    logging.getLogger(LOGGER).warning("job says %s", word)
    return word


def test_a_line_inside_an_rq_job_carries_the_job_id(app):
    logger, stream, handler = _capture("production")
    try:
        queue = get_queue("default", app)
        job = queue.enqueue(log_from_a_job, "hello")
        SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
        job.refresh()
        assert job.is_finished
    finally:
        logger.removeHandler(handler)
    (line,) = [r for r in _lines(stream) if r["message"] == "job says hello"]
    assert line["job_id"] == job.id and line["level"] == "WARNING"


def test_an_exception_is_one_line_with_its_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER + ".exc")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("boom at /password/reset/abc.def")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "failed" and "ValueError" in record["exception"]
    assert "abc.def" not in record["exception"]


def test_development_and_test_logs_are_text():
    assert not isinstance(formatter_for("development"), JsonFormatter)
    assert isinstance(formatter_for("production"), JsonFormatter)


def _run(code: str, app_env: str, database_url, redis_url, instance) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "APP_ENV"))}
    env.update(APP_ENV=app_env, DATABASE_URL=database_url, REDIS_URL=redis_url, INSTANCE_PATH=str(instance),
               REDIS_NAMESPACE=f"clinic-test-{RUN_ID}-logs", SECRET_KEY="k", AUDIT_HMAC_KEY="a",
               STRIPE_SECRET_KEY="sk_test_51LogsCheck", STRIPE_PUBLISHABLE_KEY="pk_test_51LogsCheck",
               STRIPE_WEBHOOK_SECRET="whsec_logs_check",
               FIELD_KEYS="prod1:cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=",
               LOOKUP_HASH_KEY="prod-lookup-hash-key-0123456789abcdef")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


# What worker.py does: basicConfig, then create_app (which configures logging for its mode).
WORKER_LIKE = (
    "import logging\n"
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')\n"
    "from app import create_app\n"
    "app = create_app()\n"
    "logging.getLogger('rq.worker').info('default: job %s done', 'abc')\n"
    "app.logger.warning('link /r/%s expired', 'tok-secret')\n"
)


def test_the_worker_logs_json_lines_in_production(app, database_url, service_urls, tmp_path):
    out = _run(WORKER_LIKE, "production", database_url, service_urls["REDIS_URL"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]   # every line
    said = [(r["logger"], r["message"]) for r in records]
    assert said[-2:] == [("rq.worker", "default: job abc done"), ("app", "link /r/[redacted] expired")], said
    assert "tok-secret" not in out.stderr


def test_the_worker_logs_text_in_development(app, database_url, service_urls, tmp_path):
    out = _run(WORKER_LIKE, "development", database_url, service_urls["REDIS_URL"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    assert any(line.endswith("rq.worker INFO default: job abc done") for line in lines), lines
    assert any(line.endswith("app WARNING link /r/[redacted] expired") for line in lines), lines
    assert not any(line.startswith("{") for line in lines)


def test_logging_someone_else_set_up_is_left_alone():
    """Under pytest the root carries its capture handlers: an app built here in production mode
    (tests/foundation/test_settings.py does) must not take the root over."""
    from app.logging_setup import configure

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    assert before, "pytest's capture handler is on the root"
    configure("production")
    assert root.handlers == before and root.level == level
