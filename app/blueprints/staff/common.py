"""What the staff views share: finding the provider the signed-in user may act for, and an appointment
the signed-in staff member may see."""
from flask import abort
from flask_login import current_user

from app import phi
from app.extensions import db
from app.models import Appointment, Provider
from app.services import staffing


def own_provider() -> Provider | None:
    """The signed-in provider's profile (None when an admin has not set it up yet)."""
    return staffing.provider_for_user(db.session, current_user.id)


def provider_or_404(provider_id: int) -> Provider:
    """The provider whose schedule the signed-in user may edit: their own, or any for an admin.

    Another provider's page answers 404, as if it did not exist."""
    provider = db.session.get(Provider, provider_id)
    if provider is None:
        abort(404)
    if current_user.role == "admin":
        return provider
    if current_user.role == "provider" and provider.user_id == current_user.id:
        return provider
    abort(404)


def appointment_or_404(appointment_id: int) -> Appointment:
    """The appointment: a provider's own only (another's answers 404, as if it did not exist); the other
    roles the route admits (billing, admins) any. Shown as PHI: ``phi.shown(appointment=...)``."""
    appt = db.session.get(Appointment, appointment_id)
    if appt is None:
        abort(404)
    if current_user.role == "provider":
        provider = own_provider()
        if provider is None or appt.provider_id != provider.id:
            abort(404)
    phi.shown(appointment=appt)
    return appt
