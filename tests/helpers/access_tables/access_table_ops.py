"""Expected status per role for the admin's operations routes (merged into test_access.EXPECTED).

Admin only. The job actions name a job that is not in the failed list: the admin is sent back
to the ops page (303) with a message; nothing is audited."""

ADMIN_ONLY = dict(anonymous=302, patient=403, provider=403, billing=403, admin=200)
ADMIN_ONLY_POST = dict(anonymous=302, patient=403, provider=403, billing=403, admin=303)

OPS_EXPECTED = {
    ("GET", "ops.metrics_view"): ADMIN_ONLY,
    ("GET", "ops.show"): ADMIN_ONLY,
    ("POST", "ops.retry_job"): ADMIN_ONLY_POST,
    ("POST", "ops.delete_job"): ADMIN_ONLY_POST,
}

OPS_SAMPLE_ARGS = {
    "ops.retry_job": {"job_id": "no-such-job"},
    "ops.delete_job": {"job_id": "no-such-job"},
}
