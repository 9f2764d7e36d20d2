"""What the staff views share: finding the provider the signed-in user may act for."""
from flask import abort
from flask_login import current_user

from app.extensions import db
from app.models import Provider
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
