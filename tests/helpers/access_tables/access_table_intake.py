"""Expected status per role for the intake routes (issue 15, merged into test_access.EXPECTED).

Intake pages are the signed-in patient's own: an unknown intake or appointment is a 404 for a
patient; staff get 403 before any lookup. ``/intake/start`` without a visit type is a 400. A card
photo is for its patient and staff (an unknown one: 404 for all of them); the staff view of an
appointment's intake is for providers (their own visits), billing and admins."""
LOGIN, DENY, MISSING = 302, 403, 404
PATIENT_OWN = dict(anonymous=LOGIN, patient=MISSING, provider=DENY, billing=DENY, admin=DENY)
NO_SUCH = 999999

INTAKE_EXPECTED = {
    ("GET", "intake.start"): dict(PATIENT_OWN, patient=400),
    ("GET", "intake.for_appointment"): PATIENT_OWN,
    ("GET", "intake.resume"): PATIENT_OWN,
    ("GET", "intake.step"): PATIENT_OWN,
    ("POST", "intake.save"): PATIENT_OWN,
    ("POST", "intake.submit"): PATIENT_OWN,
    ("GET", "intake.card_photo"): dict(anonymous=LOGIN, patient=MISSING, provider=MISSING, billing=MISSING,
                                       admin=MISSING),
    ("GET", "intake.staff_view"): dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=MISSING,
                                       admin=MISSING),
}
INTAKE_SAMPLE_ARGS = {
    "intake.for_appointment": {"appointment_id": NO_SUCH},
    "intake.resume": {"intake_id": NO_SUCH},
    "intake.step": {"intake_id": NO_SUCH, "step": "about"},
    "intake.save": {"intake_id": NO_SUCH, "step": "about"},
    "intake.submit": {"intake_id": NO_SUCH},
    "intake.card_photo": {"coverage_id": NO_SUCH, "side": "front"},
    "intake.staff_view": {"appointment_id": NO_SUCH},
}
