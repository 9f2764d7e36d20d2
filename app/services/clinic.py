"""The clinic's settings (name, phone, address, timezone, NPI and tax id)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ClinicSettings
from app.services import audit, identifiers
from app.services.audit import Actor


def current_clinic(session: Session) -> ClinicSettings:
    return session.get(ClinicSettings, 1) or default_clinic()


def default_clinic() -> ClinicSettings:
    """Before the admin or the seed stored any: defaults, not stored."""
    return ClinicSettings(id=1, name="Clinic Portal", phone="", address="", timezone="UTC")


_UNCHANGED = object()


def update_clinic(session: Session, *, actor: Actor, name: str, phone: str, address: str,
                  timezone: str, npi=_UNCHANGED, tax_id=_UNCHANGED) -> ClinicSettings:
    """``npi`` / ``tax_id``: left as they are when not passed; empty clears; otherwise checked
    (identifiers.InvalidIdentifier) and stored as 10 digits / NN-NNNNNNN."""
    clinic = session.get(ClinicSettings, 1)
    if clinic is None:
        clinic = ClinicSettings(id=1)
        session.add(clinic)
    before = {"name": clinic.name, "phone": clinic.phone, "address": clinic.address,
              "timezone": clinic.timezone, "npi": clinic.npi, "tax_id": clinic.tax_id}
    if npi is not _UNCHANGED:
        clinic.npi = identifiers.normalize_npi(npi)
    if tax_id is not _UNCHANGED:
        clinic.tax_id = identifiers.normalize_tin(tax_id)
    clinic.name, clinic.phone, clinic.address, clinic.timezone = name, phone, address, timezone
    changed = sorted(k for k, v in before.items() if v != getattr(clinic, k))
    audit.record(session, actor=actor, action="clinic.settings_updated",
                 details={"changed": changed})
    return clinic
