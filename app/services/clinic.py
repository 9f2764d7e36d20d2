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
    return ClinicSettings(id=1, name="Clinic Portal", phone="", address="", timezone="UTC",
                          platform_fee_percent_bp=DEFAULT_FEE_PERCENT_BP, platform_fee_fixed_cents=0)


DEFAULT_FEE_PERCENT_BP = 1000       # 10%: the column's default (migration 0014)


_UNCHANGED = object()


def update_clinic(session: Session, *, actor: Actor, name: str, phone: str, address: str,
                  timezone: str, npi=_UNCHANGED, tax_id=_UNCHANGED, platform_fee_percent_bp=_UNCHANGED,
                  platform_fee_fixed_cents=_UNCHANGED) -> ClinicSettings:
    """``npi`` / ``tax_id``: left as they are when not passed; empty clears; otherwise checked
    (identifiers.InvalidIdentifier) and stored as 10 digits / NN-NNNNNNN. ``platform_fee_*`` (issue
    16, the default fee when a type has none): left as they are when not passed; basis points
    0..10000 and cents >= 0 (ValueError otherwise)."""
    clinic = session.get(ClinicSettings, 1)
    if clinic is None:
        clinic = ClinicSettings(id=1)
        session.add(clinic)
    before = {"name": clinic.name, "phone": clinic.phone, "address": clinic.address,
              "timezone": clinic.timezone, "npi": clinic.npi, "tax_id": clinic.tax_id,
              "platform_fee_percent_bp": clinic.platform_fee_percent_bp,
              "platform_fee_fixed_cents": clinic.platform_fee_fixed_cents}
    if platform_fee_percent_bp is not _UNCHANGED:
        if not isinstance(platform_fee_percent_bp, int) or not 0 <= platform_fee_percent_bp <= 10_000:
            raise ValueError("The default platform fee is a percentage from 0 to 100.")
        clinic.platform_fee_percent_bp = platform_fee_percent_bp
    if platform_fee_fixed_cents is not _UNCHANGED:
        if not isinstance(platform_fee_fixed_cents, int) or not 0 <= platform_fee_fixed_cents <= 99_999_999:
            raise ValueError("The default fixed platform fee is an amount from $0 to $999,999.99.")
        clinic.platform_fee_fixed_cents = platform_fee_fixed_cents
    if npi is not _UNCHANGED:
        clinic.npi = identifiers.normalize_npi(npi)
    if tax_id is not _UNCHANGED:
        clinic.tax_id = identifiers.normalize_tin(tax_id)
    clinic.name, clinic.phone, clinic.address, clinic.timezone = name, phone, address, timezone
    changed = sorted(k for k, v in before.items() if v != getattr(clinic, k))
    fee = {k: {"from": before[k], "to": getattr(clinic, k)} for k in changed if k.startswith("platform_fee_")}
    audit.record(session, actor=actor, action="clinic.settings_updated",
                 details={"changed": changed, **({"platform_fee": fee} if fee else {})})
    return clinic
