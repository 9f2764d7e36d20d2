"""Estimates: the patient's expected share for a visit, and the Good Faith Estimate (45 CFR 149.610).

``compute(lines, benefits, secondary=None)`` is pure arithmetic and follows the payer simulator's
documented adjudication (devtools/payer_sandbox/README.md), so an estimate and the later remittance
agree when the 271 told the truth. Per line, in order:

1. allowed: the payer's contracted amount for the code (``SYSTEM:CODE:MODIFIER``, then ``SYSTEM:CODE``)
   times units, else the payer's default percentage of billed (half up), else billed; never more than
   billed;
2. copay: once per visit, on the first line, up to its allowed amount;
3. deductible: what is left of it, up to what is left of the line;
4. coinsurance: the plan's percentage of the rest, rounded half up to the cent;
5. the out-of-pocket maximum's remainder caps the patient's share (coinsurance is cut first, then
   deductible, then copay): the cut is ``oop_reduction_cents``.

A secondary plan then pays its share of the primary's patient share per its own benefits (the same
steps with the primary's patient share as the allowed amount). ``patient = copay + deductible +
coinsurance - oop_reduction - secondary``; ``insurer`` is what the primary pays (allowed - its patient
share); ``secondary`` what the secondary pays.

No benefits (``benefits=None``) is a self-pay estimate: the patient's share is the billed amount.

``deposit(type, breakdown)`` applies the appointment type's deposit rule (estimate | copay | percent of
the estimate | fixed), then the cap; only the fixed rule may ask more than the estimated share.

``build`` prices the type's expected codes on the fee schedule (the type's own price when it has none)
and decides insured vs self-pay: the intake's "I'll pay myself", no active primary coverage, or an
eligibility answer that is not 'active' (inactive, not found, or never reached) make it self-pay; a
self-pay estimate is a Good Faith Estimate. Appointment types that are not hybrid are never billed to
an insurer by the clinic, so every patient of those types is self-pay (``good_faith_for``).

``attach`` keeps the estimate with the appointment and sets the GFE's due date (business days are
Monday to Friday; US federal holidays are NOT skipped: a known simplification, see
``business_days_between``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Appointment, AppointmentType, BillingCode
from app.models.insurance import Coverage, EligibilityCheck, Estimate, Intake, Payer, PayerAllowedAmount
from app.services import audit
from app.services.audit import Actor

DEPOSIT_RULES = ("estimate", "copay", "percent", "fixed")


# -- the arithmetic (pure) -------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One expected service line: ``billed_cents`` for all its units; ``allowed_cents`` filled by compute."""
    system: str | None
    code: str | None
    billed_cents: int
    modifier: str = ""
    units: int = 1
    description: str | None = None
    allowed_cents: int | None = None

    def as_dict(self) -> dict:
        return {"system": self.system, "code": self.code, "modifier": self.modifier, "units": self.units,
                "billed_cents": self.billed_cents, "allowed_cents": self.allowed_cents,
                "description": self.description}


@dataclass(frozen=True)
class Benefits:
    """What a 271 (and the payer's rates) say. ``oop_remaining_cents`` None: no out-of-pocket cap known.
    ``rates``: contracted allowed amount per unit, keyed ``SYSTEM:CODE:MODIFIER`` or ``SYSTEM:CODE``;
    ``default_allowed_percent`` for codes without one (None: allowed = billed)."""
    copay_cents: int = 0
    coinsurance_percent: Decimal | int | float = 0
    deductible_remaining_cents: int = 0
    oop_remaining_cents: int | None = None
    rates: Mapping[str, int] = field(default_factory=dict)
    default_allowed_percent: int | None = None


@dataclass(frozen=True)
class Breakdown:
    lines: tuple[Line, ...]
    billed_cents: int
    allowed_cents: int
    copay_cents: int = 0
    deductible_cents: int = 0
    coinsurance_cents: int = 0
    oop_reduction_cents: int = 0
    secondary_cents: int = 0
    patient_cents: int = 0
    insurer_cents: int = 0
    insured: bool = True
    coinsurance_percent: Decimal | None = None
    deductible_remaining_cents: int | None = None      # before this visit
    oop_remaining_cents: int | None = None             # before this visit

    @property
    def primary_patient_cents(self) -> int:
        """The primary plan's patient share, before a secondary plan pays."""
        return self.patient_cents + self.secondary_cents


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def percent_of(cents: int, percent) -> int:
    """``percent`` % of ``cents``, rounded half up to the cent."""
    return half_up(Decimal(cents) * Decimal(str(percent)) / Decimal(100))


def allowed_for(line: Line, benefits: Benefits) -> int:
    key = f"{line.system}:{line.code}"
    rate = None
    if line.modifier:
        rate = benefits.rates.get(f"{key}:{line.modifier}")
    if rate is None:
        rate = benefits.rates.get(key)
    if rate is not None:
        allowed = int(rate) * int(line.units)
    elif benefits.default_allowed_percent is not None:
        allowed = percent_of(line.billed_cents, benefits.default_allowed_percent)
    else:
        allowed = line.billed_cents
    return max(0, min(line.billed_cents, allowed))


def _share(amounts: Sequence[int], benefits: Benefits) -> tuple[int, int, int, int]:
    """(copay, deductible, coinsurance, oop cut) for these allowed amounts under ``benefits``."""
    copay_left = max(0, int(benefits.copay_cents or 0))
    ded_left = max(0, int(benefits.deductible_remaining_cents or 0))
    oop_left = None if benefits.oop_remaining_cents is None else max(0, int(benefits.oop_remaining_cents))
    pct = benefits.coinsurance_percent or 0
    copay = ded = coins = cut = 0
    for allowed in amounts:
        rest = allowed
        pr3 = min(copay_left, rest)
        copay_left -= pr3
        rest -= pr3
        pr1 = min(ded_left, rest)
        ded_left -= pr1
        rest -= pr1
        pr2 = percent_of(rest, pct)
        copay, ded, coins = copay + pr3, ded + pr1, coins + pr2
        share = pr1 + pr2 + pr3
        if oop_left is not None:
            excess = max(0, share - oop_left)
            cut += excess
            oop_left -= share - excess
    return copay, ded, coins, cut


def compute(lines: Iterable[Line], benefits: Benefits | None, secondary: Benefits | None = None) -> Breakdown:
    """The breakdown for ``lines`` under ``benefits`` (None: self-pay), with an optional secondary plan."""
    lines = tuple(lines)
    billed = sum(ln.billed_cents for ln in lines)
    if benefits is None:
        priced = tuple(replace(ln, allowed_cents=ln.billed_cents) for ln in lines)
        return Breakdown(lines=priced, billed_cents=billed, allowed_cents=billed, patient_cents=billed,
                         insurer_cents=0, insured=False)
    priced = tuple(replace(ln, allowed_cents=allowed_for(ln, benefits)) for ln in lines)
    allowed = sum(ln.allowed_cents for ln in priced)
    copay, ded, coins, cut = _share([ln.allowed_cents for ln in priced], benefits)
    primary_share = copay + ded + coins - cut
    second = 0
    if secondary is not None and primary_share > 0:
        s_copay, s_ded, s_coins, s_cut = _share([primary_share], secondary)
        second = max(0, primary_share - (s_copay + s_ded + s_coins - s_cut))
    return Breakdown(lines=priced, billed_cents=billed, allowed_cents=allowed, copay_cents=copay,
                     deductible_cents=ded, coinsurance_cents=coins, oop_reduction_cents=cut,
                     secondary_cents=second, patient_cents=primary_share - second,
                     insurer_cents=allowed - primary_share, insured=True,
                     coinsurance_percent=Decimal(str(benefits.coinsurance_percent or 0)),
                     deductible_remaining_cents=benefits.deductible_remaining_cents,
                     oop_remaining_cents=benefits.oop_remaining_cents)


def deposit(appointment_type: AppointmentType, breakdown: Breakdown) -> tuple[str, int]:
    """(rule, cents) due at booking: the estimate, the copay, a percentage of the estimate or a fixed
    amount, then the type's cap. Never more than the estimated patient share unless the rule is fixed."""
    rule = appointment_type.deposit_rule or "estimate"
    share = max(0, breakdown.patient_cents)
    if rule == "copay":
        cents = min(breakdown.copay_cents, share)
    elif rule == "percent":
        cents = percent_of(share, appointment_type.deposit_percent or 0)
    elif rule == "fixed":
        cents = max(0, appointment_type.deposit_fixed_cents or 0)
    else:
        rule, cents = "estimate", share
    if rule != "fixed":
        cents = min(cents, share)
    if appointment_type.deposit_cap_cents is not None:
        cents = min(cents, max(0, appointment_type.deposit_cap_cents))
    return rule, max(0, cents)


def deposit_rule_words(appointment_type: AppointmentType, rule: str | None = None) -> str:
    """The rule in plain words, for the estimate page."""
    rule = rule or appointment_type.deposit_rule or "estimate"
    # Whole sentences, lazy (issue 17): made in the viewer's language when shown.
    percent = appointment_type.deposit_percent or 0
    fixed = f"${(appointment_type.deposit_fixed_cents or 0) / 100:,.2f}"
    if appointment_type.deposit_cap_cents is None:
        return {"estimate": _l("The deposit is your estimated share of the cost."),
                "copay": _l("The deposit is your copay."),
                "percent": _l("The deposit is %(percent)s%% of your estimated share.", percent=percent),
                "fixed": _l("The deposit is a fixed deposit of %(amount)s.", amount=fixed)}[rule]
    cap = f"${appointment_type.deposit_cap_cents / 100:,.2f}"
    return {"estimate": _l("The deposit is your estimated share of the cost, at most %(cap)s.", cap=cap),
            "copay": _l("The deposit is your copay, at most %(cap)s.", cap=cap),
            "percent": _l("The deposit is %(percent)s%% of your estimated share, at most %(cap)s.", percent=percent, cap=cap),
            "fixed": _l("The deposit is a fixed deposit of %(amount)s, at most %(cap)s.", amount=fixed, cap=cap)}[rule]


# -- business days (GFE due dates) ---------------------------------------------------------------------

def is_business_day(day: date) -> bool:
    """Monday to Friday. US federal holidays are not skipped (a documented simplification: a due date
    may land on a holiday, which only makes it earlier than the rule requires, never later)."""
    return day.weekday() < 5


def add_business_days(day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        if is_business_day(day):
            n -= 1
    return day


def business_days_between(start: date, end: date) -> int:
    """Business days after ``start`` up to and including ``end`` (0 when end <= start)."""
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        if is_business_day(day):
            count += 1
    return count


def gfe_due_by(scheduled_at: datetime, visit_at: datetime, tz: str) -> datetime:
    """When the Good Faith Estimate is due (45 CFR 149.610(b)(1)(vi)): scheduled at least 3 business
    days before the visit: within 1 business day of scheduling; at least 10: within 3 business days;
    otherwise (the rule sets no time) at scheduling. "Within n business days" ends at the end of that
    day in the clinic's time zone."""
    zone = ZoneInfo(tz or "UTC")
    booked_day = scheduled_at.astimezone(zone).date()
    visit_day = visit_at.astimezone(zone).date()
    away = business_days_between(booked_day, visit_day)
    if away >= 10:
        n = 3
    elif away >= 3:
        n = 1
    else:
        return scheduled_at
    due_day = add_business_days(booked_day, n)
    return datetime.combine(due_day, time(23, 59, 59), tzinfo=zone).astimezone(ZoneInfo("UTC"))


# -- the database side ---------------------------------------------------------------------------------

def _clinic_tz(session: Session) -> str:
    from app.services.clinic import current_clinic

    return current_clinic(session).timezone or "UTC"


def expected_lines(session: Session, appointment_type: AppointmentType, service_date: date) -> list[Line]:
    """The type's expected codes priced on the fee schedule for ``service_date``; codes without a price
    are left out. No priced code: one line at the type's own price."""
    from app.services import fees

    out: list[Line] = []
    for item in appointment_type.expected_codes or []:
        if not isinstance(item, Mapping):
            continue
        system, code = str(item.get("system") or "").upper(), str(item.get("code") or "").upper()
        modifier = str(item.get("modifier") or "").upper()
        try:
            units = max(1, int(item.get("units") or 1))
        except (TypeError, ValueError):
            units = 1
        row = session.scalar(select(BillingCode).where(BillingCode.system == system, BillingCode.code == code))
        if row is None:
            continue
        try:
            price = fees.price_for(session, row.id, modifier, service_date)
        except Exception:                                   # a malformed stored modifier
            price = None
        if price is None:
            continue
        out.append(Line(system=system, code=code, modifier=modifier, units=units, billed_cents=price * units,
                        description=None if row.licensed else row.descriptor))
    if not out:
        out.append(Line(system=None, code=None, billed_cents=appointment_type.price_cents,
                        description=appointment_type.name))
    return out


def payer_rates(session: Session, payer_id: str) -> dict[str, int]:
    rows = session.execute(select(BillingCode.system, BillingCode.code, PayerAllowedAmount.modifier,
                                  PayerAllowedAmount.allowed_cents)
                           .join(BillingCode, BillingCode.id == PayerAllowedAmount.billing_code_id)
                           .where(PayerAllowedAmount.payer_id == payer_id))
    return {f"{s}:{c}:{m}" if m else f"{s}:{c}": cents for s, c, m, cents in rows}


def benefits_from(session: Session, coverage: Coverage, check: EligibilityCheck) -> Benefits:
    payer = session.get(Payer, coverage.payer_id)
    ded_left = 0
    if check.deductible_cents is not None:
        ded_left = max(0, check.deductible_cents - (check.deductible_met_cents or 0))
    oop_left = None
    if check.oop_max_cents is not None:
        oop_left = max(0, check.oop_max_cents - (check.oop_met_cents or 0))
    return Benefits(copay_cents=check.copay_cents or 0,
                    coinsurance_percent=Decimal(str(check.coinsurance_percent or 0)),
                    deductible_remaining_cents=ded_left, oop_remaining_cents=oop_left,
                    rates=payer_rates(session, coverage.payer_id),
                    default_allowed_percent=payer.default_allowed_percent if payer else None)


def _active_coverages(session: Session, patient_id: int) -> dict[str, Coverage]:
    rows = session.scalars(select(Coverage).where(Coverage.patient_id == patient_id, Coverage.status == "active"))
    return {c.rank: c for c in rows}


def intake_self_pay(intake: Intake | None) -> bool:
    if intake is None:
        return False
    try:
        return bool(json.loads(intake.data or "{}").get("self_pay"))
    except (ValueError, AttributeError):
        return False


def _coverages_for(session: Session, patient_id: int, intake: Intake | None) -> dict[str, Coverage]:
    """The patient's active coverage per rank (one each, a partial unique index). An intake that saved
    its insurance names its coverages (``coverage_ids``): a rank it left out has none."""
    found = _active_coverages(session, patient_id)
    if intake is not None:
        try:
            named = json.loads(intake.data or "{}").get("coverage_ids")
        except (ValueError, AttributeError):
            named = None
        if isinstance(named, dict) and named:
            ids = {int(v) for v in named.values() if isinstance(v, int) or str(v).isdigit()}
            return {r: c for r, c in found.items() if c.id in ids}
    return found


def _verified(session: Session, coverage: Coverage | None, *, service_date: date, now: datetime,
              actor: Actor) -> EligibilityCheck | None:
    """The newest check of ``coverage`` (one is made when there is none)."""
    from app.services import eligibility

    if coverage is None:
        return None
    check = eligibility.latest(session, coverage.id)
    if check is None:
        check = eligibility.check(session, coverage, trigger="entry", service_date=service_date, now=now,
                                  actor=actor)
    return check


def build(session: Session, *, patient, appointment_type: AppointmentType, intake: Intake | None = None,
          service_date: date, now: datetime, actor: Actor, self_pay: bool | None = None) -> Estimate:
    """A new Estimate (insured, or self-pay = Good Faith Estimate) for this patient and type.
    ``self_pay`` True skips insurance (a type the clinic never bills to an insurer)."""
    patient_id = patient.id if hasattr(patient, "id") else int(patient)
    if isinstance(service_date, datetime):
        service_date = service_date.date()
    lines = expected_lines(session, appointment_type, service_date)
    primary = secondary = None
    check = second_check = None
    benefits = second_benefits = None
    self_pay = bool(self_pay) or intake_self_pay(intake)
    if not self_pay:
        covs = _coverages_for(session, patient_id, intake)
        primary, secondary = covs.get("primary"), covs.get("secondary")
        check = _verified(session, primary, service_date=service_date, now=now, actor=actor)
        if primary is not None and check is not None and check.status == "active":
            benefits = benefits_from(session, primary, check)
            second_check = _verified(session, secondary, service_date=service_date, now=now, actor=actor)
            if secondary is not None and second_check is not None and second_check.status == "active":
                second_benefits = benefits_from(session, secondary, second_check)
    breakdown = compute(lines, benefits, second_benefits)
    rule, deposit_cents = deposit(appointment_type, breakdown)
    insured = benefits is not None
    estimate = Estimate(
        patient_id=patient_id, appointment_type_id=appointment_type.id,
        intake_id=intake.id if intake is not None else None,
        coverage_id=primary.id if primary is not None and not self_pay else None,
        secondary_coverage_id=secondary.id if insured and second_benefits is not None else None,
        eligibility_check_id=check.id if check is not None else None,
        kind="insured" if insured else "self_pay",
        lines=[ln.as_dict() for ln in breakdown.lines],
        billed_cents=breakdown.billed_cents, allowed_cents=breakdown.allowed_cents,
        copay_cents=breakdown.copay_cents, deductible_cents=breakdown.deductible_cents,
        coinsurance_cents=breakdown.coinsurance_cents, oop_reduction_cents=breakdown.oop_reduction_cents,
        secondary_cents=breakdown.secondary_cents, patient_cents=breakdown.patient_cents,
        insurer_cents=breakdown.insurer_cents, deposit_rule=rule, deposit_cents=deposit_cents,
        good_faith=not insured)
    session.add(estimate)
    session.flush()
    audit.record(session, actor=actor, action="estimate.built", patient_id=patient_id, at=now,
                 details={"estimate_id": estimate.id, "intake_id": estimate.intake_id, "kind": estimate.kind,
                          "good_faith": estimate.good_faith, "eligibility_check_id": estimate.eligibility_check_id,
                          "patient_cents": estimate.patient_cents, "deposit_cents": estimate.deposit_cents})
    return estimate


def latest_for_intake(session: Session, intake_id: int) -> Estimate | None:
    return session.scalar(select(Estimate).where(Estimate.intake_id == intake_id)
                          .order_by(Estimate.id.desc()).limit(1))


def _copy(estimate: Estimate) -> Estimate:
    skip = {"id", "appointment_id", "gfe_due_by", "gfe_delivered_at", "created_at"}
    cols = {c.key: getattr(estimate, c.key) for c in Estimate.__table__.columns if c.key not in skip}
    return Estimate(**cols)


def attach(session: Session, estimate: Estimate, appointment: Appointment, *, now: datetime,
           actor: Actor, scheduled_at: datetime | None = None) -> Estimate:
    """Keep ``estimate`` with ``appointment`` (a copy when it already belongs to another one) and, for a
    Good Faith Estimate, set when it is due, counted from ``scheduled_at`` (default ``now``: attach runs
    when the visit is scheduled). Returns the attached row."""
    if estimate.appointment_id is not None and estimate.appointment_id != appointment.id:
        estimate = _copy(estimate)
        session.add(estimate)
    estimate.appointment_id = appointment.id
    if estimate.good_faith and estimate.gfe_due_by is None:
        scheduled = min(scheduled_at or now, now)
        estimate.gfe_due_by = gfe_due_by(scheduled, appointment.starts_at, _clinic_tz(session))
    session.flush()
    audit.record(session, actor=actor, action="estimate.attached", patient_id=estimate.patient_id,
                 appointment_id=appointment.id, at=now,
                 details={"estimate_id": estimate.id, "good_faith": estimate.good_faith,
                          "gfe_due_by": estimate.gfe_due_by.isoformat() if estimate.gfe_due_by else None,
                          "deposit_cents": estimate.deposit_cents})
    return estimate


def for_appointment(session: Session, appointment_id: int) -> Estimate | None:
    """The estimate kept with the appointment (the newest attached), or None."""
    return session.scalar(select(Estimate).where(Estimate.appointment_id == appointment_id)
                          .order_by(Estimate.id.desc()).limit(1))


def is_self_pay(session: Session, appointment: Appointment, appointment_type: AppointmentType | None = None,
                intake: Intake | None = None) -> bool:
    """Self-pay or uninsured for this appointment: a type the clinic never bills to an insurer (not
    hybrid), the intake's "I'll pay myself", or no active primary coverage verified active."""
    appointment_type = appointment_type or session.get(AppointmentType, appointment.type_id)
    if appointment_type.payment_timing != "hybrid":
        return True
    if intake_self_pay(intake):
        return True
    primary = _active_coverages(session, appointment.patient_id).get("primary")
    if primary is None:
        return True
    from app.services import eligibility

    check = eligibility.latest(session, primary.id)
    return check is None or check.status != "active"


def _intake_for(session: Session, appointment_id: int) -> Intake | None:
    return session.scalar(select(Intake).where(Intake.appointment_id == appointment_id)
                          .order_by(Intake.id.desc()).limit(1))


def good_faith_for(session: Session, appointment: Appointment, *, now: datetime, actor: Actor) -> Estimate | None:
    """The appointment's Good Faith Estimate, made and attached when the patient is self-pay or uninsured
    (any payment timing) and it has none yet; None for an insured patient."""
    current = for_appointment(session, appointment.id)
    if current is not None and current.good_faith:
        return current
    appointment_type = session.get(AppointmentType, appointment.type_id)
    intake = _intake_for(session, appointment.id)
    if current is not None and current.kind == "insured":
        return None
    if not is_self_pay(session, appointment, appointment_type, intake):
        return None
    zone = ZoneInfo(_clinic_tz(session))
    hybrid = appointment_type.payment_timing == "hybrid"
    estimate = build(session, patient=appointment.patient_id, appointment_type=appointment_type, intake=intake,
                     service_date=appointment.starts_at.astimezone(zone).date(), now=now, actor=actor,
                     self_pay=not hybrid)
    if not estimate.good_faith:           # insured after all (a check answered meanwhile)
        attach(session, estimate, appointment, now=now, actor=actor)
        return None
    if not hybrid:
        # Deposit-to-book and post-visit visits are priced at booking (the appointment's price): without
        # expected codes that price is the expected charge. Their payment follows their own timing.
        if not any(ln.get("code") for ln in estimate.lines):
            line = Line(system=None, code=None, billed_cents=appointment.price_cents,
                        description=appointment_type.name)
            estimate.lines = [replace(line, allowed_cents=line.billed_cents).as_dict()]
            estimate.billed_cents = estimate.allowed_cents = estimate.patient_cents = appointment.price_cents
        estimate.deposit_cents = 0
    return attach(session, estimate, appointment, now=now, actor=actor, scheduled_at=appointment.confirmed_at)


def mark_delivered(session: Session, estimate: Estimate, *, now: datetime, actor: Actor) -> bool:
    """Record that the GFE was sent to the patient (once)."""
    if estimate.gfe_delivered_at is not None:
        return False
    estimate.gfe_delivered_at = now
    audit.record(session, actor=actor, action="estimate.gfe_delivered", patient_id=estimate.patient_id,
                 appointment_id=estimate.appointment_id, at=now, details={"estimate_id": estimate.id})
    return True


__all__ = ["Line", "Benefits", "Breakdown", "compute", "deposit", "build", "attach", "for_appointment",
           "good_faith_for", "gfe_due_by", "business_days_between", "add_business_days", "latest_for_intake",
           "deposit_rule_words", "is_self_pay", "mark_delivered"]


# -- what the pages show ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Explained:
    """An estimate with what the patient needs to read it: the plan's numbers before this visit."""
    estimate: Estimate
    appointment_type: AppointmentType
    payer_name: str | None = None
    secondary_payer_name: str | None = None
    check: EligibilityCheck | None = None
    coverage_status: str | None = None        # the primary's last eligibility status, when self-pay anyway
    coinsurance_percent: str | None = None          # for display: "20", "12.5"
    deductible_left_cents: int | None = None
    oop_left_cents: int | None = None
    rule_words: str = ""

    @property
    def written_off_cents(self) -> int:
        return max(0, self.estimate.billed_cents - self.estimate.allowed_cents)

    @property
    def insurance_pays_cents(self) -> int:
        return self.estimate.insurer_cents + self.estimate.secondary_cents


def explain(session: Session, estimate: Estimate) -> Explained:
    appointment_type = session.get(AppointmentType, estimate.appointment_type_id)
    check = session.get(EligibilityCheck, estimate.eligibility_check_id) if estimate.eligibility_check_id else None
    payer_name = second_name = None
    if estimate.coverage_id:
        cov = session.get(Coverage, estimate.coverage_id)
        payer_name = cov.payer.name if cov is not None and cov.payer is not None else None
    if estimate.secondary_coverage_id:
        cov = session.get(Coverage, estimate.secondary_coverage_id)
        second_name = cov.payer.name if cov is not None and cov.payer is not None else None
    pct = ded_left = oop_left = None
    if check is not None and check.status == "active":
        pct = format(Decimal(str(check.coinsurance_percent or 0)).normalize(), "f")
        if check.deductible_cents is not None:
            ded_left = max(0, check.deductible_cents - (check.deductible_met_cents or 0))
        if check.oop_max_cents is not None:
            oop_left = max(0, check.oop_max_cents - (check.oop_met_cents or 0))
    return Explained(estimate=estimate, appointment_type=appointment_type, payer_name=payer_name,
                     secondary_payer_name=second_name, check=check,
                     coverage_status=check.status if check is not None else None,
                     coinsurance_percent=pct, deductible_left_cents=ded_left, oop_left_cents=oop_left,
                     rule_words=deposit_rule_words(appointment_type, estimate.deposit_rule) if appointment_type else "")
