"""Expected status per role for the fee schedule (issue 14; merged into test_access.EXPECTED).

Admin only. The forms posted empty are refused with 422 (the form again, with its errors)."""

ADMIN_ONLY = dict(anonymous=302, patient=403, provider=403, billing=403, admin=200)
ADMIN_ONLY_FORM = dict(anonymous=302, patient=403, provider=403, billing=403, admin=422)

FEES_EXPECTED = {
    ("GET", "admin.fees_page"): ADMIN_ONLY,
    ("POST", "admin.set_price"): ADMIN_ONLY_FORM,
    ("POST", "admin.add_code"): ADMIN_ONLY_FORM,
}

FEES_SAMPLE_ARGS = {}
