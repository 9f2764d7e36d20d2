"""Expected status per role for the PHI access review and the staff patient page (merged into
test_access.EXPECTED).

The staff patient page: a provider with no visit with the patient is asked for a reason
(break-glass, 200 with the form); admins open it; an unknown patient is 404. The admin's access
review pages are the admin's alone."""
LOGIN, DENY = 302, 403
ADMIN_ONLY = dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY)


def _patient_id(factories):
    return {"patient_id": factories.patient().id}


def _user_id(factories):
    return {"user_id": factories.user("billing").id}


PHI_EXPECTED = {
    ("GET", "staff.patient"): dict(anonymous=LOGIN, patient=DENY, provider=200, billing=DENY, admin=200),
    ("POST", "staff.break_glass"): dict(anonymous=LOGIN, patient=DENY, provider=422, billing=DENY, admin=422),
    ("GET", "admin.access_review"): dict(ADMIN_ONLY, admin=200),
    ("GET", "admin.patient_access"): dict(ADMIN_ONLY, admin=200),
    ("GET", "admin.patient_access_csv"): dict(ADMIN_ONLY, admin=200),
    ("GET", "admin.user_access"): dict(ADMIN_ONLY, admin=200),
    ("GET", "admin.user_access_csv"): dict(ADMIN_ONLY, admin=200),
}
PHI_SAMPLE_ARGS = {
    "staff.patient": _patient_id,
    "staff.break_glass": _patient_id,
    "admin.patient_access": _patient_id,
    "admin.patient_access_csv": _patient_id,
    "admin.user_access": _user_id,
    "admin.user_access_csv": _user_id,
}
