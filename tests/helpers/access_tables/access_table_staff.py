"""Expected status per role for the staff pages' routes (merged into test_access.EXPECTED).

A SAMPLE_ARGS value may be a callable taking ``factories``: it makes the rows
the route needs (in the test's database) and returns the url arguments. The
signed-in provider of the table has no provider profile, so another
provider's editor or appointment is 404 for them, as for any other provider.
"""
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

LOGIN, DENY, MISSING = 302, 403, 404


def _only_admin(admin):
    return dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=admin)


def _editor(admin):
    """Provider and admin routes on another provider's schedule."""
    return dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=DENY, admin=admin)


STAFF_EXPECTED: dict = {
    ("GET", "staff.my_availability"): dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=DENY,
                                           admin=303),
    ("GET", "staff.availability"): _editor(200),
    ("POST", "staff.add_rule"): _editor(422),
    ("POST", "staff.delete_rule"): _editor(303),
    ("POST", "staff.add_exception"): _editor(422),
    ("POST", "staff.delete_exception"): _editor(303),
    ("GET", "staff.types"): _only_admin(200),
    ("GET", "staff.new_type"): _only_admin(200),
    ("POST", "staff.new_type"): _only_admin(422),
    ("GET", "staff.edit_type"): _only_admin(200),
    ("POST", "staff.edit_type"): _only_admin(422),
    ("GET", "staff.providers"): _only_admin(200),
    ("GET", "staff.new_provider"): _only_admin(200),
    ("POST", "staff.new_provider"): _only_admin(422),
    ("GET", "staff.edit_provider"): _only_admin(200),
    ("POST", "staff.edit_provider"): _only_admin(303),    # an empty post keeps the profile as it is
    ("GET", "staff.specialties"): _only_admin(200),
    ("POST", "staff.specialties"): _only_admin(422),
    ("GET", "staff.day"): dict(anonymous=LOGIN, patient=DENY, provider=200, billing=200, admin=200),
    ("GET", "staff.week"): dict(anonymous=LOGIN, patient=DENY, provider=200, billing=200, admin=200),
    ("POST", "staff.mark"): _editor(303),
    ("GET", "staff.cancel"): dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=200, admin=200),
    ("POST", "staff.cancel"): dict(anonymous=LOGIN, patient=DENY, provider=MISSING, billing=422, admin=422),
}


def _provider(factories):
    return {"provider_id": factories.provider().id}


def _rule(factories):
    provider = factories.provider(hours=[(0, 9, 17)])
    from app.models import AvailabilityRule

    rule = factories.session.scalars(select(AvailabilityRule).where(AvailabilityRule.provider_id == provider.id)).one()
    return {"provider_id": provider.id, "rule_id": rule.id}


def _exception(factories):
    from app.models import AvailabilityException

    provider = factories.provider()
    exception = AvailabilityException(provider_id=provider.id, starts_local=datetime(2026, 12, 24, 0, 0),
                                      ends_local=datetime(2026, 12, 26, 0, 0), reason="holiday", note="")
    factories.session.add(exception)
    factories.session.commit()
    return {"provider_id": provider.id, "exception_id": exception.id}


def confirmed_appointment(factories, starts_at: datetime):
    """A confirmed appointment inserted directly (any time, past or future)."""
    from app.models import Appointment

    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    appointment = Appointment(patient_id=factories.patient().id, provider_id=provider.id, type_id=visit.id,
                              status="confirmed", starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                              blocked_start=starts_at, blocked_end=starts_at + timedelta(minutes=30),
                              price_cents=visit.price_cents, payment_timing=visit.payment_timing,
                              modality=visit.modality)
    factories.session.add(appointment)
    factories.session.commit()
    return appointment


def _appointment(action=None):
    def make(factories):
        appointment = confirmed_appointment(factories, datetime.now(timezone.utc) + timedelta(days=3))
        args = {"appointment_id": appointment.id}
        if action:
            args["action"] = action
        return args
    return make


STAFF_SAMPLE_ARGS: dict = {
    "staff.availability": _provider,
    "staff.add_rule": _provider,
    "staff.delete_rule": _rule,
    "staff.add_exception": _provider,
    "staff.delete_exception": _exception,
    "staff.edit_type": lambda factories: {"type_id": factories.appointment_type().id},
    "staff.edit_provider": _provider,
    "staff.mark": _appointment("check_in"),
    "staff.cancel": _appointment(),
}
