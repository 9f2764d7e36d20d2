"""Operations, for admins: the Prometheus exposition and the ops page.

- ``GET /admin/metrics``: the text exposition (``app/services/metrics.py``). Access rule
  ``admin``: an admin's session may read it; Prometheus may instead send
  ``Authorization: Bearer <METRICS_TOKEN>`` when that setting is set. The token is checked by
  ``init_app``'s hook, which runs before the access rules (``app.access.enforce``) and answers
  the scrape itself; a wrong token is refused with 401, never sent on to the sign-in page.
- ``GET /admin/ops``: queues (depth, oldest job's age), failed jobs with Retry and Delete,
  the last sweep, the audit chain's lag and the Stripe webhook backlog.
  This page shows no PHI: a failed job is shown by id, queue, function name, failure time and
  exception type only, never its arguments, its exception's message or its traceback.
- ``POST /admin/ops/jobs/<id>/retry`` and ``.../delete``: audited (``ops.job_retried``,
  ``ops.job_deleted``; the row is committed before Redis is touched, and a failure there is
  recorded too), CSRF-protected, single-submit forms.

``init_app`` also installs the request-latency hook (timed from the first before_request to the
after_request that has the response and its status).
"""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, current_app, flash, g, request, url_for
from flask_login import current_user

from app.access import access
from app.extensions import db
from app.queues import QUEUES, redis_connection
from app.services import audit, metrics, ops
from app.services.audit import Actor
from app.web import redirect_htmx, render

bp = Blueprint("ops", __name__, url_prefix="/admin")

FAILED_SHOWN = 50


def _namespace() -> str:
    return current_app.config["SETTINGS"].REDIS_NAMESPACE


def _exposition():
    body = metrics.exposition(db.session, redis_connection(), _namespace(), QUEUES)
    return current_app.response_class(body, mimetype=None, content_type=metrics.CONTENT_TYPE)


@bp.get("/metrics")
@access("admin", phi=False)
def metrics_view():
    return _exposition()


@bp.get("/ops")
@access("admin", phi=False)
def show():
    conn, namespace = redis_connection(), _namespace()
    context = dict(queues=None, failed=None, sweep=None, redis_error=None)
    try:
        context.update(queues=ops.queue_stats(conn, namespace, QUEUES),
                       failed=ops.failed_jobs(conn, namespace, limit=FAILED_SHOWN, known=QUEUES),
                       sweep=ops.last_sweep(conn, namespace))
    except Exception as error:          # Redis away: the database's half of the page still shows
        current_app.logger.warning("ops page: Redis unreadable (%s)", type(error).__name__)
        context["redis_error"] = type(error).__name__
    lag = audit.lag(db.session)
    backlog = ops.webhook_backlog(db.session)
    db.session.rollback()
    return render("admin/ops.html", lag=lag, backlog=backlog, failed_shown=FAILED_SHOWN, **context)


def _act(job_id: str, action: str, operation, done: str):
    conn, namespace = redis_connection(), _namespace()
    try:
        queue, job, described = ops.find_failed(conn, namespace, job_id, QUEUES)
    except ops.JobNotFound:
        flash("That job is no longer in the failed list: it was retried or deleted already.", "info")
        return redirect_htmx(url_for("ops.show"))
    details = {"job_id": described.id, "queue": described.queue, "function": described.function,
               "exception": described.exception}
    actor = Actor.of(current_user)
    audit.record(db.session, actor=actor, action=action, details=details)
    db.session.commit()                  # the action is on record before it is taken
    try:
        operation(queue, job)
    except Exception as error:
        audit.record(db.session, actor=actor, action=action, outcome="failure", reason=type(error).__name__,
                     details=details)
        db.session.commit()
        current_app.logger.warning("ops: %s of job %s failed (%s)", action, job_id, type(error).__name__)
        flash("The job could not be changed; try again.", "error")
    else:
        flash(done, "success")
    return redirect_htmx(url_for("ops.show"))


@bp.post("/ops/jobs/<job_id>/retry")
@access("admin", phi=False)
def retry_job(job_id: str):
    return _act(job_id, "ops.job_retried", ops.retry_failed, "Job queued again.")


@bp.post("/ops/jobs/<job_id>/delete")
@access("admin", phi=False)
def delete_job(job_id: str):
    return _act(job_id, "ops.job_deleted", ops.delete_failed, "Job deleted.")


# -- app-wide hooks ----------------------------------------------------------------------------------

def _start_timer():
    g.metrics_started = time.perf_counter()


def _record_latency(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        try:
            metrics.observe_request(request.endpoint, response.status_code, time.perf_counter() - started)
        except Exception:                # a metric must never cost a response
            current_app.logger.exception("metrics: could not record the request")
    return response


def _bearer_scrape():
    """Prometheus with ``Authorization: Bearer <METRICS_TOKEN>``: answered here, before the access
    rules; without the header the admin session is asked for as usual."""
    if request.endpoint != "ops.metrics_view":
        return None
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    token = current_app.config["SETTINGS"].METRICS_TOKEN
    given = header[7:].strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        response = current_app.response_class("invalid metrics token\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return _exposition()


def init_app(app) -> None:
    """Install the latency hook and the bearer-token scrape; call before the access rules' hook."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.before_request(_bearer_scrape)
    app.after_request(_record_latency)
