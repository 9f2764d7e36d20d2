"""Operations for admins: /admin/metrics (Prometheus text exposition) and /admin/ops (queues,
failed jobs with Retry and Delete, last sweep, audit chain lag, webhook backlog)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import select

from app.jobs import get_queue, probe, redis_connection, set_app
from app.services import audit, ops
from app.settings import ConfigError, Settings
from tests.helpers.web import csrf_from

SECRET = "Jane Q. Patient, DOB 1970-01-01"       # stands in for PHI a job's args/exception could carry
FAMILIES = {
    "clinic_http_request_duration_seconds", "clinic_queue_depth", "clinic_queue_oldest_job_age_seconds",
    "clinic_queue_scheduled_jobs", "clinic_queue_started_jobs", "clinic_queue_failed_jobs",
    "clinic_sweep_last_finished_timestamp_seconds", "clinic_payment_attempts", "clinic_payment_attempt_outcomes",
    "clinic_payment_captures", "clinic_payment_captured_cents", "clinic_refunds", "clinic_refunded_cents",
    "clinic_stripe_events_unprocessed", "clinic_stripe_event_oldest_unprocessed_age_seconds",
    "clinic_stripe_events_failing", "clinic_audit_unlinked_rows", "clinic_audit_oldest_unlinked_age_seconds",
    "clinic_metrics_source_up",
}


def explode(who: str) -> None:
    """A job that fails for real (its argument and message stand in for PHI)."""
    raise ValueError(f"could not reach {who}")


def scrape(client, **kwargs) -> dict:
    response = client.get("/admin/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Cache-Control"] == "no-store"
    return {family.name: family for family in text_string_to_metric_families(response.get_data(as_text=True))}


def sample(families, name, sample_name=None, **labels) -> float | None:
    for s in families[name].samples:
        if s.name == (sample_name or name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def _appointment_with_payments(factories, db):
    from app.models import Charge, PaymentAttempt, Refund
    from tests.helpers.access_tables.access_table_chain import _appointment

    appointment_id = _appointment(factories)["appointment_id"]
    charge = Charge(appointment_id=appointment_id, purpose="deposit", amount_cents=12500, status="captured",
                    amount_captured_cents=12500)
    db.add(charge)
    db.flush()
    lost = PaymentAttempt(charge_id=charge.id, number=1, amount_cents=12500, status="canceled", outcome="slot_lost")
    paid = PaymentAttempt(charge_id=charge.id, number=2, amount_cents=12500, status="succeeded",
                          amount_captured_cents=12500, captured_at=datetime.now(timezone.utc))
    db.add_all([lost, paid])
    db.flush()
    db.add(Refund(charge_id=charge.id, attempt_id=paid.id, amount_cents=2500, stripe_reason="requested_by_customer",
                  clinical_reason="test", policy="billing", status="succeeded"))
    db.commit()


# -- who may read them ---------------------------------------------------------------------------

@pytest.mark.parametrize("role,status", [("patient", 403), ("provider", 403), ("billing", 403)])
def test_metrics_and_ops_are_for_admins_only(client, login_as, role, status):
    assert client.get("/admin/metrics").status_code == 302          # anonymous: sent to sign in
    login_as(role)
    assert client.get("/admin/metrics").status_code == status
    assert client.get("/admin/ops").status_code == status


def test_a_bearer_token_scrapes_when_metrics_token_is_set(app, client, monkeypatch):
    token = "t" * 40
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/admin/metrics", headers=bearer).status_code == 401     # no token configured
    monkeypatch.setitem(app.config, "SETTINGS", dataclasses.replace(app.config["SETTINGS"], METRICS_TOKEN=token))
    families = scrape(client, headers=bearer)
    assert FAMILIES <= set(families)
    wrong = client.get("/admin/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/admin/metrics").status_code == 302            # no header: the admin session rule
    assert client.get("/admin/ops", headers=bearer).status_code == 302  # the token opens the metrics only


def test_a_short_metrics_token_is_refused():
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        Settings.from_env({"METRICS_TOKEN": "short"})
    assert Settings.from_env({"METRICS_TOKEN": "k" * 32}).METRICS_TOKEN == "k" * 32


# -- what they say -------------------------------------------------------------------------------

def test_exposition_parses_and_carries_every_family(app, db, client, login_as, factories):
    from app.models import StripeEvent

    login_as("admin")
    before = scrape(client)
    assert FAMILIES <= set(before)
    assert sample(before, "clinic_metrics_source_up", source="redis") == 1
    assert sample(before, "clinic_metrics_source_up", source="database") == 1
    count = "clinic_http_request_duration_seconds_count"
    served = sample(before, "clinic_http_request_duration_seconds", count, endpoint="admin.home",
                    status_class="2xx") or 0

    assert client.get("/admin/").status_code == 200
    db.add(StripeEvent(id="evt_ops_backlog", type="payment_intent.succeeded", created=0, payload={}))
    db.commit()
    _appointment_with_payments(factories, db)
    queue = get_queue("default", app)
    depth = queue.count
    job = queue.enqueue(probe, "unused")
    ops.record_sweep(redis_connection(app), app.config["SETTINGS"].REDIS_NAMESPACE, {"holds_released": 0})
    try:
        after = scrape(client)
    finally:
        job.delete()

    assert sample(after, "clinic_http_request_duration_seconds", count, endpoint="admin.home",
                  status_class="2xx") == served + 1
    assert sample(after, "clinic_http_request_duration_seconds", "clinic_http_request_duration_seconds_bucket",
                  endpoint="admin.home", status_class="2xx", le="+Inf") == served + 1
    assert sample(after, "clinic_stripe_events_unprocessed") == 1
    assert 0 <= sample(after, "clinic_stripe_event_oldest_unprocessed_age_seconds") < 600
    assert sample(after, "clinic_queue_depth", queue="default") == depth + 1
    assert 0 <= sample(after, "clinic_queue_oldest_job_age_seconds", queue="default") < 600
    assert sample(after, "clinic_queue_failed_jobs", queue="default") is not None
    assert abs(sample(after, "clinic_sweep_last_finished_timestamp_seconds") - time.time()) < 60
    assert sample(after, "clinic_payment_attempts", status="succeeded") == 1
    assert sample(after, "clinic_payment_attempts", status="canceled") == 1
    assert sample(after, "clinic_payment_attempt_outcomes", outcome="slot_lost") == 1
    assert sample(after, "clinic_payment_captures", "clinic_payment_captures_total") == 1
    assert sample(after, "clinic_payment_captured_cents", "clinic_payment_captured_cents_total") == 12500
    assert sample(after, "clinic_refunds", status="succeeded") == 1
    assert sample(after, "clinic_refunded_cents") == 2500
    lag = audit.lag(db)
    assert lag.unlinked >= 1                           # sign-in and account rows, not linked yet
    assert sample(after, "clinic_audit_unlinked_rows") == lag.unlinked
    assert sample(after, "clinic_audit_oldest_unlinked_age_seconds") >= 0


def test_the_sweep_stamps_its_end(app, db):
    from app.jobs.periodic import sweep

    set_app(app)
    started = time.time()
    result = sweep()
    stamp = ops.last_sweep(redis_connection(app), app.config["SETTINGS"].REDIS_NAMESPACE)
    assert stamp is not None and stamp.at.timestamp() >= started - 1
    assert stamp.result["holds_released"] == result["holds_released"]


def test_request_latency_is_summed_across_processes_in_multiprocess_mode(tmp_path):
    """gunicorn's workers each observe; the scrape (any one of them) sums the files."""
    script = textwrap.dedent("""
        import sys
        from app.services import metrics
        if sys.argv[1] == "observe":
            metrics.observe_request("home.index", 200, 0.01)
        else:
            from prometheus_client import generate_latest
            print(generate_latest(metrics.process_registry()).decode())
    """)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script, "observe"], env=env, check=True, timeout=120)
    out = subprocess.run([sys.executable, "-c", script, "read"], env=env, check=True, timeout=120,
                         capture_output=True, text=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(out)}
    assert sample(families, "clinic_http_request_duration_seconds", "clinic_http_request_duration_seconds_count",
                  endpoint="home.index", status_class="2xx") == 2


# -- the ops page and its failed jobs ------------------------------------------------------------

def _fail_a_job(app):
    queue = get_queue("default", app)
    job = queue.enqueue(explode, SECRET)              # no Retry: straight to the failed registry
    SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
    job.refresh()
    assert job.is_failed
    return job


def _actions(db, action):
    from app.models.audit import AuditEvent

    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_a_failed_job_is_shown_and_retried_then_deleted_with_audit_rows(app, db, client, login_as):
    from app.models import StripeEvent

    admin = login_as("admin")
    db.add(StripeEvent(id="evt_ops_page", type="payment_intent.succeeded", created=0, payload={}))
    db.commit()
    job = _fail_a_job(app)
    try:
        page = client.get("/admin/ops")
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        html = page.get_data(as_text=True)
        assert job.id in html
        assert "tests.foundation.test_ops.explode" in html and "ValueError" in html
        assert SECRET not in html and "could not reach" not in html and "Traceback" not in html
        assert "1 event not yet processed" in html
        assert "not yet linked" in html
        assert 'name="csrf_token"' in html and f"/admin/ops/jobs/{job.id}/retry" in html

        retried = client.post(f"/admin/ops/jobs/{job.id}/retry", data={"csrf_token": csrf_from(html)})
        assert retried.status_code == 303
        job.refresh()
        assert job.get_status() == "queued" and job.id in get_queue("default", app).get_job_ids()
        [row] = _actions(db, "ops.job_retried")
        assert row.actor_id == admin.id and row.outcome == "success"
        assert row.details == {"job_id": job.id, "queue": "default", "function": "tests.foundation.test_ops.explode",
                               "exception": "ValueError"}

        # It fails again; this time it is deleted.
        SimpleWorker([get_queue("default", app)], connection=redis_connection(app)).work(burst=True)
        job.refresh()
        assert job.is_failed
        html = client.get("/admin/ops").get_data(as_text=True)
        deleted = client.post(f"/admin/ops/jobs/{job.id}/delete", data={"csrf_token": csrf_from(html)})
        assert deleted.status_code == 303
        with pytest.raises(NoSuchJobError):
            Job.fetch(job.id, connection=redis_connection(app))
        [row] = _actions(db, "ops.job_deleted")
        assert row.actor_id == admin.id and row.details["job_id"] == job.id
        assert job.id not in client.get("/admin/ops").get_data(as_text=True)

        # A second Delete (double submit, another admin) finds nothing and records nothing.
        again = client.post(f"/admin/ops/jobs/{job.id}/delete", data={"csrf_token": csrf_from(html)},
                            follow_redirects=True)
        assert "no longer in the failed list" in again.get_data(as_text=True)
        assert len(_actions(db, "ops.job_deleted")) == 1
    finally:
        try:
            Job.fetch(job.id, connection=redis_connection(app)).delete()
        except NoSuchJobError:
            pass


def test_job_actions_need_the_csrf_token(app, client, login_as):
    login_as("admin")
    job = _fail_a_job(app)
    try:
        assert client.post(f"/admin/ops/jobs/{job.id}/delete").status_code == 400
        job.refresh()
        assert job.is_failed
    finally:
        job.delete()


def test_exception_type_never_carries_the_message():
    trace = f"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: could not reach {SECRET}\n"
    assert ops.exception_type(trace) == "ValueError"
    assert ops.exception_type("psycopg.errors.DeadlockDetected: detail\n") == "psycopg.errors.DeadlockDetected"
    assert ops.exception_type(None) == "unknown"
    assert ops.exception_type(f"{SECRET}") == "unknown"
