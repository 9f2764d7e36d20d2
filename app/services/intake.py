"""Patient intake: demographics, the reason for the visit and the type's questionnaire, insurance
(primary, optional secondary, or "I'll pay myself"), consents signed by typing the name, then submit.

One ``Intake`` row per filling, its answers one encrypted JSON document (``intakes.data``)::

    {"demographics": {legal_name, date_of_birth, sex, address_line1, address_line2, city, state,
                      postal_code},
     "reason": str, "answers": {question key: value},
     "self_pay": bool | None,                       # None: the insurance step was never saved
     "coverage_ids": {"primary": id, "secondary": id},
     "saved": [section, ...]}                       # sections saved at least once

Save and come back: each step saves its section (``save_section``) with a compare-and-swap on
``intakes.version`` (the row is locked, the version the page was opened with must still be the
current one: two tabs never overwrite each other silently, ``IntakeConflict``); the draft is resumed
by ``start`` (one draft per patient and appointment type while it belongs to no appointment, a
partial unique index). A new draft is prefilled from the patient's last submitted intake.

Insurance is kept as ``Coverage`` rows (encrypted field by field), primary and secondary, one active
per rank: a changed coverage is a new row and the old one becomes 'replaced' (``save_coverage``).
Consents are ``IntakeConsent`` rows, append-only (a trigger refuses UPDATE/DELETE), one per kind
and intake, each signed by typing the legal name (case-insensitive).

``submit`` checks the type's required sections (``required_sections``) and moves the draft to
submitted (the intake machine). For hybrid types the caller then builds the estimate
(``estimates.build``) in the same transaction; the booking page shows slots only once the patient
has a submitted intake with an estimate (``ready_for_booking``), and the hold attaches both
(``attach`` here, ``estimates.attach``) in the hold's transaction.

Services never commit; no PHI goes into audit rows (ids, sections, versions only).
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Appointment, AppointmentType, Patient
from app.models.appointment import BOOKED
from app.models.insurance import (CONSENT_KINDS, RANKS, RELATIONSHIPS, SEXES, Coverage, Estimate, Intake,
                                  IntakeConsent, Payer)
from app.models.state import Ignored
from app.services import DomainError, audit, insert_or_existing
from app.services.audit import Actor

SECTIONS = ("demographics", "reason", "questions", "insurance", "consents")
# The pages, in order, and the sections each one saves.
STEPS = ("about", "reason", "insurance", "consents", "review")
STEP_SECTIONS = {"about": ("demographics",), "reason": ("reason", "questions"), "insurance": ("insurance",),
                 "consents": ("consents",), "review": ()}
SECTION_STEPS = {"demographics": "about", "questions": "reason"}     # a section's name -> its step
# The patient's words are lazy (_l): shown in the page's language (English outside a request).
STEP_TITLES = {"about": _l("About you"), "reason": _l("Reason for your visit"), "insurance": _l("Insurance"),
               "consents": _l("Consents"), "review": _l("Review and submit")}
DEFAULT_REQUIRED = {"hybrid": SECTIONS}
DEFAULT_REQUIRED_OTHER = ("demographics", "reason", "consents")
# A submitted hybrid intake opens the booking page's times for this long (a new one is asked after).
BOOKING_VALID_FOR = timedelta(days=30)

DEMOGRAPHIC_FIELDS = ("legal_name", "date_of_birth", "sex", "address_line1", "address_line2", "city", "state",
                      "postal_code")
DEMOGRAPHIC_REQUIRED = ("legal_name", "date_of_birth", "sex", "address_line1", "city", "state", "postal_code")
COVERAGE_FIELDS = ("payer_id", "member_id", "group_number", "plan_name", "subscriber_relationship",
                   "subscriber_name", "subscriber_birth_date")
LABELS = {"legal_name": _l("Legal name"), "date_of_birth": _l("Date of birth"), "sex": _l("Sex"),
          "address_line1": _l("Address"), "address_line2": _l("Address line 2"), "city": _l("City"),
          "state": _l("State"), "postal_code": _l("ZIP code"), "reason": _l("Reason for the visit"),
          "payer_id": _l("Insurer"), "payer": _l("Insurer"), "member_id": _l("Member ID"),
          "group_number": _l("Group number"), "plan_name": _l("Plan name"),
          "subscriber_relationship": _l("You are the subscriber's"), "subscriber_name": _l("Subscriber's name"),
          "subscriber_birth_date": _l("Subscriber's date of birth"), "self_pay": _l("Paying"),
          "card": _l("Card photos")}
SEX_LABELS = {"female": _l("Female"), "male": _l("Male"), "other": _l("Other"), "unknown": _l("Prefer not to say")}
RELATIONSHIP_LABELS = {"self": _l("I am the subscriber"), "spouse": _l("Spouse"), "child": _l("Child"),
                       "other": _l("Other")}

CONSENTS = {
    # Shown in the page's language; the signature records the kind and version (the same in both).
    "treatment": ("treatment-v1", _l("Consent to treatment"),
                  _l("I consent to examination and treatment by the clinic's clinicians for this visit. I can "
                     "ask questions and refuse any treatment at any time.")),
    "privacy": ("privacy-v1", _l("Notice of privacy practices"),
                _l("I have been offered the clinic's Notice of Privacy Practices, which explains how my health "
                   "information is used and shared and my rights about it.")),
    "financial": ("financial-v1", _l("Financial policy"),
                  _l("I understand that I am responsible for what my insurance does not pay, including copays, "
                     "deductibles and coinsurance, and for the whole charge if I pay myself. I authorize the "
                     "clinic to bill my insurance and to receive its payments.")),
    "telehealth": ("telehealth-v1", _l("Telehealth"),
                   _l("I consent to receive care by secure video. I understand its limits (no physical exam), "
                      "that I can ask for an in-person visit instead, and that I must be where I said I am.")),
}

US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA PR RI SC SD TN TX UT VT VA VI WA WV WI WY GU AS MP".split())
ZIP = re.compile(r"\d{5}(-\d{4})?")
MEMBER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,39}")
PHOTO_TYPES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}
RANKS_FORM = RANKS
PHOTO_MAX_BYTES = 700_000          # after the page shrinks it (app/static/js/intake.js); the body limit is 1 MiB


class IntakeInvalid(DomainError):
    """What the patient typed cannot be saved: ``errors`` maps each field to a message for them."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


class IntakeConflict(DomainError):
    """The intake changed since the page was opened (another tab) or is no longer a draft."""

    def __init__(self, message: str, *, current_version: int):
        super().__init__(message)
        self.current_version = current_version


@dataclass(frozen=True)
class Change:
    section: str
    field: str
    label: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Photo:
    content: bytes
    content_type: str


# -- reading ------------------------------------------------------------------------------------

def data(intake: Intake) -> dict:
    """The intake's answers as a dict, with every key present."""
    try:
        raw = json.loads(intake.data or "{}")
    except ValueError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    demographics = raw.get("demographics") if isinstance(raw.get("demographics"), dict) else {}
    return {"demographics": {name: demographics.get(name) or "" for name in DEMOGRAPHIC_FIELDS},
            "reason": raw.get("reason") or "",
            "answers": raw.get("answers") if isinstance(raw.get("answers"), dict) else {},
            "self_pay": raw.get("self_pay"),
            "coverage_ids": raw.get("coverage_ids") if isinstance(raw.get("coverage_ids"), dict) else {},
            "saved": list(raw.get("saved") or []),
            "provider_id": raw.get("provider_id") if isinstance(raw.get("provider_id"), int) else None}


def _store(intake: Intake, values: dict) -> None:
    intake.data = json.dumps(values, sort_keys=True)


def remember_provider(intake: Intake, provider_id: int) -> None:
    """The clinician the patient chose before intake (not PHI): where "Choose a time" goes back to."""
    values = data(intake)
    if values["provider_id"] != provider_id:
        values["provider_id"] = provider_id
        _store(intake, values)


def provider_id(intake: Intake) -> int | None:
    return data(intake)["provider_id"]


def self_pay(intake: Intake) -> bool:
    return bool(data(intake).get("self_pay"))


def required_sections(appointment_type: AppointmentType) -> tuple[str, ...]:
    """The sections this type requires before submit (``intake_required``; unset: all for hybrid,
    demographics, reason and consents for the others)."""
    configured = [s for s in (appointment_type.intake_required or []) if s in SECTIONS]
    if configured:
        return tuple(s for s in SECTIONS if s in configured)
    if appointment_type.payment_timing == "hybrid":
        return SECTIONS
    return DEFAULT_REQUIRED_OTHER


def consent_kinds(appointment_type: AppointmentType) -> tuple[str, ...]:
    kinds = ("treatment", "privacy", "financial")
    return kinds + ("telehealth",) if appointment_type.modality == "telehealth" else kinds


def questions(appointment_type: AppointmentType) -> list[dict]:
    """The type's questionnaire, cleaned: [{key, label, kind, choices, required}]."""
    out = []
    for q in appointment_type.intake_questions or []:
        if not isinstance(q, dict) or not q.get("key"):
            continue
        kind = q.get("kind") if q.get("kind") in ("text", "yesno", "choice") else "text"
        out.append({"key": str(q["key"]), "label": str(q.get("label") or q["key"]), "kind": kind,
                    "choices": [str(c) for c in (q.get("choices") or [])], "required": bool(q.get("required"))})
        out[-1]["options"] = [(c, c) for c in out[-1]["choices"]]
    return out


def consents_of(session: Session, intake_id: int) -> dict[str, IntakeConsent]:
    rows = session.scalars(select(IntakeConsent).where(IntakeConsent.intake_id == intake_id)).all()
    return {row.kind: row for row in rows}


def active_coverages(session: Session, patient_id: int) -> dict[str, Coverage]:
    rows = session.scalars(select(Coverage).where(Coverage.patient_id == patient_id,
                                                  Coverage.status == "active")).all()
    return {row.rank: row for row in rows}


def coverages_of(session: Session, intake: Intake) -> dict[str, Coverage]:
    """The coverages this intake recorded (by rank), whatever their status now."""
    ids = data(intake)["coverage_ids"]
    out = {}
    for rank in RANKS:
        if ids.get(rank):
            found = session.get(Coverage, int(ids[rank]))
            if found is not None and found.patient_id == intake.patient_id:
                out[rank] = found
    return out


def payers(session: Session) -> list[Payer]:
    return list(session.scalars(select(Payer).where(Payer.is_active.is_(True)).order_by(Payer.name)))


def for_appointment(session: Session, appointment_id: int) -> Intake | None:
    """The intake attached to an appointment: the newest submitted one, else the newest draft."""
    rows = session.scalars(select(Intake).where(Intake.appointment_id == appointment_id)
                           .order_by(Intake.id.desc())).all()
    return next((i for i in rows if i.status == "submitted"), rows[0] if rows else None)


def last_submitted(session: Session, patient_id: int, *, before_id: int | None = None) -> Intake | None:
    query = select(Intake).where(Intake.patient_id == patient_id, Intake.status == "submitted")
    if before_id is not None:
        query = query.where(Intake.id != before_id)
    return session.scalar(query.order_by(Intake.submitted_at.desc(), Intake.id.desc()).limit(1))


def latest_estimate(session: Session, intake: Intake) -> Estimate | None:
    return session.scalar(select(Estimate).where(Estimate.intake_id == intake.id)
                          .order_by(Estimate.id.desc()).limit(1))


def missing(session: Session, intake: Intake, appointment_type: AppointmentType | None = None) -> dict[str, str]:
    """What submit still needs, by section, in plain words (empty: complete)."""
    appointment_type = appointment_type or session.get(AppointmentType, intake.appointment_type_id)
    values = data(intake)
    need = {}
    required = required_sections(appointment_type)
    if "demographics" in required:
        absent = [str(LABELS[f]).lower() for f in DEMOGRAPHIC_REQUIRED if not values["demographics"].get(f)]
        if absent:
            need["demographics"] = _l("About you is missing: %(fields)s.", fields=", ".join(absent))
    if "reason" in required and not values["reason"].strip():
        need["reason"] = _l("Tell us the reason for your visit.")
    if "questions" in required or "reason" in required:
        unanswered = [q["label"] for q in questions(appointment_type)
                      if q["required"] and not str(values["answers"].get(q["key"]) or "").strip()]
        if unanswered:
            need["questions"] = _l("Please answer: %(questions)s.", questions="; ".join(unanswered))
    if "insurance" in required:
        if values["self_pay"] is None or (not values["self_pay"] and not values["coverage_ids"].get("primary")):
            need["insurance"] = _l("Add your insurance, or choose to pay yourself.")
    if "consents" in required:
        signed = consents_of(session, intake.id)
        unsigned = [str(CONSENTS[k][1]) for k in consent_kinds(appointment_type) if k not in signed]
        if unsigned:
            need["consents"] = _l("Please sign: %(consents)s.", consents=", ".join(unsigned))
    return need


# -- starting and resuming ----------------------------------------------------------------------

def _prefill(session: Session, patient: Patient) -> tuple[dict, Intake | None]:
    previous = last_submitted(session, patient.id)
    values = data(previous) if previous is not None else data(Intake(data="{}"))
    values["reason"] = ""                  # each visit has its own reason
    values["saved"] = []
    values["self_pay"] = None              # asked again (the insurance step offers the last answer)
    values["provider_id"] = None
    values["coverage_ids"] = {}
    if previous is None:
        values["demographics"]["legal_name"] = patient.user.full_name or ""
    return values, previous


def start(session: Session, *, patient: Patient, appointment_type: AppointmentType,
          appointment: Appointment | None = None, now: datetime, actor: Actor) -> Intake:
    """The draft to fill: the one already started (for this type, or for this appointment), or a new
    one prefilled from the patient's last submitted intake."""
    if appointment is not None:
        if appointment.patient_id != patient.id:
            raise IntakeInvalid({"appointment": _l("This is not your appointment.")})
        found = session.scalar(select(Intake).where(Intake.appointment_id == appointment.id,
                                                    Intake.status == "draft").order_by(Intake.id.desc()).limit(1))
        if found is not None:
            return found
    draft_query = (select(Intake).where(Intake.patient_id == patient.id,
                                        Intake.appointment_type_id == appointment_type.id,
                                        Intake.status == "draft", Intake.appointment_id.is_(None)))
    if appointment is None:
        found = session.scalar(draft_query)
        if found is not None:
            return found
    values, previous = _prefill(session, patient)
    intake = Intake(patient_id=patient.id, appointment_type_id=appointment_type.id,
                    appointment_id=appointment.id if appointment is not None else None, status="draft",
                    version=1, step=STEPS[0], previous_intake_id=previous.id if previous else None,
                    created_at=now, updated_at=now)
    _store(intake, values)
    # One draft per patient and type: another tab's, started at the same moment, is used.
    intake, inserted = insert_or_existing(session, intake, lambda: session.scalar(draft_query))
    if not inserted:
        return intake
    audit.record(session, actor=actor, action="intake.started", patient_id=patient.id,
                 appointment_id=intake.appointment_id, at=now,
                 details={"intake_id": intake.id, "appointment_type_id": appointment_type.id,
                          "previous_intake_id": intake.previous_intake_id})
    return intake


# -- validation -----------------------------------------------------------------------------------

def _text(form, name: str, *, limit: int) -> str:
    value = form.get(name)
    value = value if isinstance(value, str) else ""
    return " ".join(value.split())[:limit + 1]


def _birth_date(raw: str, *, now: datetime, subscriber: bool = False) -> tuple[str | None, str | None]:
    """(ISO date, error): the patient's date of birth, or the subscriber's."""
    if not raw:
        return None, None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None, (_l("The subscriber's date of birth looks like 1980-04-30.") if subscriber
                      else _l("Date of birth looks like 1980-04-30."))
    if day < date(1900, 1, 1) or day > now.date():
        return None, (_l("The subscriber's date of birth must be a real date in the past.") if subscriber
                      else _l("Date of birth must be a real date in the past."))
    return day.isoformat(), None


def _name_key(name: str) -> str:
    return " ".join((name or "").split()).casefold()


def _demographics(form, *, required: bool, now: datetime) -> tuple[dict, dict]:
    values, errors = {}, {}
    limits = {"legal_name": 120, "address_line1": 120, "address_line2": 120, "city": 80, "state": 2,
              "postal_code": 10, "sex": 10, "date_of_birth": 10}
    for name in DEMOGRAPHIC_FIELDS:
        values[name] = _text(form, name, limit=limits[name] + 20)
    for name in DEMOGRAPHIC_FIELDS:
        if len(values[name]) > limits[name] and name not in ("state", "date_of_birth", "postal_code", "sex"):
            errors[name] = _l("%(field)s is too long (at most %(limit)s characters).", field=LABELS[name],
                              limit=limits[name])
    if values["legal_name"] and not re.search(r"[^\W\d_]", values["legal_name"]):
        errors["legal_name"] = _l("Type your legal name in letters.")
    dob, problem = _birth_date(values["date_of_birth"], now=now)
    if problem:
        errors["date_of_birth"] = problem
    elif dob:
        values["date_of_birth"] = dob
    if values["sex"] and values["sex"] not in SEXES:
        errors["sex"] = _l("Choose one of the options.")
    values["state"] = values["state"].upper()
    if values["state"] and values["state"] not in US_STATES:
        errors["state"] = _l("Use the two-letter state code, like NY.")
    if values["postal_code"] and not ZIP.fullmatch(values["postal_code"]):
        errors["postal_code"] = _l("A ZIP code looks like 10001 or 10001-1234.")
    if required:
        for name in DEMOGRAPHIC_REQUIRED:
            if not values[name] and name not in errors:
                errors[name] = _l("%(field)s is required.", field=LABELS[name])
    return values, errors


def _reason(form, appointment_type: AppointmentType, *, required: bool) -> tuple[str, dict, dict]:
    errors = {}
    raw = form.get("reason") if isinstance(form.get("reason"), str) else ""
    reason = raw.strip()
    if len(reason) > 1000:
        errors["reason"] = _l("Please keep the reason under 1,000 characters.")
    elif required and not reason:
        errors["reason"] = _l("Tell us briefly why you are coming in.")
    answers = {}
    for q in questions(appointment_type):
        name = f"q_{q['key']}"
        value = form.get(name) if isinstance(form.get(name), str) else ""
        value = value.strip()
        if q["kind"] == "yesno" and value and value not in ("yes", "no"):
            errors[name] = _l("Choose yes or no.")
        elif q["kind"] == "choice" and value and value not in q["choices"]:
            errors[name] = _l("Choose one of the options.")
        elif len(value) > 500:
            errors[name] = _l("Please keep this under 500 characters.")
        elif q["required"] and not value:
            errors[name] = _l("Please answer this question.")
        answers[q["key"]] = value
    return reason, answers, errors


def coverage_fields(form, prefix: str, *, demographics: dict, session: Session, now: datetime) -> tuple[dict, dict]:
    """One coverage's fields from the form (``<prefix>_<name>``), checked: (values, errors keyed by
    the form's names)."""
    values, errors = {}, {}
    for name in COVERAGE_FIELDS:
        values[name] = _text(form, f"{prefix}_{name}", limit=140)
    values["member_id"] = values["member_id"].upper()
    if not values["subscriber_relationship"]:
        values["subscriber_relationship"] = "self"
    if values["subscriber_relationship"] not in RELATIONSHIPS:
        errors[f"{prefix}_subscriber_relationship"] = _l("Choose one of the options.")
    elif values["subscriber_relationship"] == "self":
        values["subscriber_name"] = values["subscriber_name"] or demographics.get("legal_name") or ""
        values["subscriber_birth_date"] = values["subscriber_birth_date"] or demographics.get("date_of_birth") or ""
    payer = session.get(Payer, values["payer_id"][:40]) if values["payer_id"] else None
    if payer is None or not payer.is_active:
        errors[f"{prefix}_payer_id"] = _l("Choose your insurer from the list.")
    if not values["member_id"]:
        errors[f"{prefix}_member_id"] = _l("The member ID is on the front of your card.")
    elif not MEMBER_ID.fullmatch(values["member_id"]):
        errors[f"{prefix}_member_id"] = _l("Type the member ID exactly as on the card (letters and digits).")
    for name, limit in (("group_number", 40), ("plan_name", 80), ("subscriber_name", 120)):
        if len(values[name]) > limit:
            errors[f"{prefix}_{name}"] = _l("%(field)s is too long (at most %(limit)s characters).",
                                            field=LABELS[name], limit=limit)
    if not values["subscriber_name"]:
        errors.setdefault(f"{prefix}_subscriber_name", _l("Type the subscriber's name as on the card."))
    dob, problem = _birth_date(values["subscriber_birth_date"], now=now, subscriber=True)
    if problem:
        errors[f"{prefix}_subscriber_birth_date"] = problem
    elif not dob:
        errors[f"{prefix}_subscriber_birth_date"] = _l("The subscriber's date of birth is required.")
    else:
        values["subscriber_birth_date"] = dob
    return values, errors


def check_photo(photo: Photo | None, field: str) -> dict:
    if photo is None or not photo.content:
        return {}
    magic = PHOTO_TYPES.get(photo.content_type)
    if magic is None or not photo.content.startswith(magic) or (
            photo.content_type == "image/webp" and photo.content[8:12] != b"WEBP"):
        return {field: _l("The card photo must be a JPEG, PNG or WebP picture.")}
    if len(photo.content) > PHOTO_MAX_BYTES:
        return {field: _l("That photo is too large. Please take it again a little further away.")}
    return {}


# -- saving --------------------------------------------------------------------------------------

def _lock(session: Session, intake: Intake, expected_version: int | None) -> None:
    session.refresh(intake, with_for_update=True)
    if intake.status != "draft":
        raise IntakeConflict(_l("This intake was already submitted."), current_version=intake.version)
    if expected_version is not None and expected_version != intake.version:
        raise IntakeConflict(_l("This intake was changed in another tab or window since you opened this page."),
                             current_version=intake.version)


def _saved(session: Session, intake: Intake, values: dict, section: str, *, step: str | None, now: datetime,
           actor: Actor, details: dict | None = None) -> None:
    if section not in values["saved"]:
        values["saved"].append(section)
    _store(intake, values)
    intake.version += 1
    if step:
        intake.step = step
    intake.updated_at = now
    session.flush()
    audit.record(session, actor=actor, action="intake.saved", patient_id=intake.patient_id,
                 appointment_id=intake.appointment_id, at=now,
                 details={"intake_id": intake.id, "section": section, "version": intake.version, **(details or {})})


def _next_step(step: str) -> str:
    return STEPS[min(STEPS.index(step) + 1, len(STEPS) - 1)]


def save_section(session: Session, intake: Intake, section: str, form, *, expected_version: int | None,
                 now: datetime, actor: Actor, photos: dict[str, Photo] | None = None,
                 user_id: int | None = None) -> Intake:
    """Save one step: ``section`` is a step name (about, reason, insurance, consents) or a section name
    (demographics, questions: their step). ``form`` maps the form's field names to strings. Raises
    IntakeInvalid (nothing saved) or IntakeConflict (the intake moved on meanwhile)."""
    section = SECTION_STEPS.get(section, section)
    if section not in STEP_SECTIONS or section == "review":
        raise IntakeInvalid({"section": _l("Unknown part of the intake.")})
    _lock(session, intake, expected_version)
    appointment_type = session.get(AppointmentType, intake.appointment_type_id)
    required = required_sections(appointment_type)
    values = data(intake)
    if section == "about":
        demographics, errors = _demographics(form, required="demographics" in required, now=now)
        signed = consents_of(session, intake.id)
        if signed and _name_key(demographics["legal_name"]) != _name_key(values["demographics"]["legal_name"]):
            errors["legal_name"] = _l("You have signed the consents with your legal name as it was: it can no "
                                      "longer change on this intake. Please ask the clinic to correct it.")
        if errors:
            raise IntakeInvalid(errors)
        values["demographics"] = demographics
        _saved(session, intake, values, "demographics", step=_next_step(section), now=now, actor=actor)
    elif section == "reason":
        reason, answers, errors = _reason(form, appointment_type, required="reason" in required)
        if errors:
            raise IntakeInvalid(errors)
        values["reason"], values["answers"] = reason, answers
        _saved(session, intake, values, "reason", step=_next_step(section), now=now, actor=actor)
    elif section == "insurance":
        _save_insurance(session, intake, values, form, photos or {}, required="insurance" in required,
                        now=now, actor=actor)
    elif section == "consents":
        _save_consents(session, intake, values, form, appointment_type, now=now, actor=actor, user_id=user_id)
    return intake


def _save_insurance(session: Session, intake: Intake, values: dict, form, photos: dict[str, Photo], *,
                    required: bool, now: datetime, actor: Actor) -> None:
    choice = form.get("coverage_choice")
    if choice not in ("insurance", "self_pay"):
        raise IntakeInvalid({"coverage_choice": _l("Choose: use my insurance, or pay myself.")})
    if choice == "self_pay":
        values["self_pay"] = True
        values["coverage_ids"] = {}
        _saved(session, intake, values, "insurance", step="consents", now=now, actor=actor,
               details={"self_pay": True})
        return
    ranks = ["primary"] + (["secondary"] if form.get("has_secondary") in ("1", "on", "yes") else [])
    parsed, errors = {}, {}
    for rank in ranks:
        fields, problems = coverage_fields(form, rank, demographics=values["demographics"], session=session, now=now)
        parsed[rank] = fields
        errors.update(problems)
        for side in ("front", "back"):
            errors.update(check_photo(photos.get(f"{rank}_card_{side}"), f"{rank}_card_{side}"))
    if len(ranks) == 2 and not errors and (parsed["primary"]["payer_id"], parsed["primary"]["member_id"]) == (
            parsed["secondary"]["payer_id"], parsed["secondary"]["member_id"]):
        errors["secondary_member_id"] = _l("The second insurance is the same as the first one.")
    if errors:
        raise IntakeInvalid(errors)
    saved = {}
    for rank in ranks:
        saved[rank] = save_coverage(session, intake, rank=rank, fields=parsed[rank],
                                    front=photos.get(f"{rank}_card_front"), back=photos.get(f"{rank}_card_back"),
                                    now=now, actor=actor)
    if "secondary" not in ranks:
        old = active_coverages(session, intake.patient_id).get("secondary")
        if old is not None:
            old.status = "replaced"
            session.flush()
            audit.record(session, actor=actor, action="coverage.removed", patient_id=intake.patient_id,
                         appointment_id=intake.appointment_id, at=now,
                         details={"coverage_id": old.id, "rank": "secondary", "intake_id": intake.id})
    values["self_pay"] = False
    values["coverage_ids"] = {rank: c.id for rank, c in saved.items()}
    _saved(session, intake, values, "insurance", step="consents", now=now, actor=actor,
           details={"self_pay": False, "coverage_ids": values["coverage_ids"]})


def _same(old: Coverage, fields: dict) -> bool:
    return all((getattr(old, name) or "") == (fields.get(name) or "") for name in COVERAGE_FIELDS)


def save_coverage(session: Session, intake: Intake, *, rank: str, fields: dict, now: datetime, actor: Actor,
                  front: Photo | None = None, back: Photo | None = None) -> Coverage:
    """The patient's active coverage of this rank as typed: the same one when nothing changed (new
    photos aside), otherwise a new row (the old one 'replaced'). Card photos carry over while the
    insurer and member id stay the same."""
    if rank not in RANKS:
        raise IntakeInvalid({"rank": "Unknown insurance rank."})
    old = session.scalar(select(Coverage).where(Coverage.patient_id == intake.patient_id, Coverage.rank == rank,
                                                Coverage.status == "active").with_for_update(of=Coverage))
    if old is not None and _same(old, fields):
        changed = False
        for side, photo in (("front", front), ("back", back)):
            if photo is not None and photo.content:
                setattr(old, f"card_{side}", base64.b64encode(photo.content).decode())
                setattr(old, f"card_{side}_type", photo.content_type)
                changed = True
        if changed:
            session.flush()
            audit.record(session, actor=actor, action="coverage.card_photo_added", patient_id=intake.patient_id,
                         appointment_id=intake.appointment_id, at=now,
                         details={"coverage_id": old.id, "rank": rank, "intake_id": intake.id})
        return old
    keep_photos = old is not None and (old.payer_id, old.member_id) == (fields["payer_id"], fields["member_id"])
    if old is not None:
        old.status = "replaced"
        session.flush()                  # one active per rank: the old one steps aside first
    coverage = Coverage(patient_id=intake.patient_id, intake_id=intake.id, rank=rank, status="active",
                        created_at=now, **{name: (fields.get(name) or None) for name in COVERAGE_FIELDS})
    coverage.subscriber_relationship = fields.get("subscriber_relationship") or "self"
    for side, photo in (("front", front), ("back", back)):
        if photo is not None and photo.content:
            setattr(coverage, f"card_{side}", base64.b64encode(photo.content).decode())
            setattr(coverage, f"card_{side}_type", photo.content_type)
        elif keep_photos:
            setattr(coverage, f"card_{side}", getattr(old, f"card_{side}"))
            setattr(coverage, f"card_{side}_type", getattr(old, f"card_{side}_type"))
    session.add(coverage)
    session.flush()
    audit.record(session, actor=actor, action="coverage.replaced" if old is not None else "coverage.added",
                 patient_id=intake.patient_id, appointment_id=intake.appointment_id, at=now,
                 details={"coverage_id": coverage.id, "rank": rank, "intake_id": intake.id,
                          "replaced_coverage_id": old.id if old is not None else None,
                          "card_photos": [s for s in ("front", "back") if getattr(coverage, f"card_{s}")]})
    return coverage


def card_photo(coverage: Coverage, side: str) -> Photo | None:
    if side not in ("front", "back"):
        return None
    raw = getattr(coverage, f"card_{side}")
    if not raw:
        return None
    return Photo(base64.b64decode(raw), getattr(coverage, f"card_{side}_type") or "application/octet-stream")


def check_eligibility(session: Session, intake: Intake, *, now: datetime, actor: Actor) -> dict:
    """Run the entry eligibility check (H2's ``eligibility.check``, which never raises for the
    clearinghouse) for each coverage the intake recorded; {rank: EligibilityCheck}."""
    from app.services import eligibility

    service_date = now.date()
    if intake.appointment_id:
        appointment = session.get(Appointment, intake.appointment_id)
        if appointment is not None:
            service_date = appointment.starts_at.date()
    out = {}
    for rank, coverage in coverages_of(session, intake).items():
        if coverage.status != "active":
            continue
        out[rank] = eligibility.check(session, coverage, trigger="entry", service_date=service_date,
                                      appointment_id=intake.appointment_id, now=now, actor=actor)
    return out


def _save_consents(session: Session, intake: Intake, values: dict, form, appointment_type: AppointmentType, *,
                   now: datetime, actor: Actor, user_id: int | None) -> None:
    signed = consents_of(session, intake.id)
    legal = values["demographics"].get("legal_name") or ""
    errors, to_sign = {}, []
    for kind in consent_kinds(appointment_type):
        if kind in signed:
            continue
        typed = _text(form, f"consent_{kind}", limit=140)
        if not typed:
            continue
        if not legal:
            errors[f"consent_{kind}"] = _l("Fill in your legal name under About you first.")
        elif _name_key(typed) != _name_key(legal):
            errors[f"consent_{kind}"] = _l("Type your full legal name exactly as under About you (%(name)s).",
                                           name=legal)
        else:
            to_sign.append((kind, typed))
    if errors:
        raise IntakeInvalid(errors)
    for kind, typed in to_sign:
        sign_consent(session, intake, kind=kind, typed_name=typed, now=now, actor=actor, user_id=user_id)
    _saved(session, intake, values, "consents", step="review", now=now, actor=actor,
           details={"signed": [k for k, _ in to_sign]})


def sign_consent(session: Session, intake: Intake, *, kind: str, typed_name: str, now: datetime, actor: Actor,
                 user_id: int | None = None) -> IntakeConsent:
    """Sign one consent by typing the legal name (case-insensitive). Append-only: a consent already
    signed on this intake is returned as it is."""
    if kind not in CONSENT_KINDS:
        raise IntakeInvalid({f"consent_{kind}": _l("Unknown consent.")})
    found = consents_of(session, intake.id).get(kind)
    if found is not None:
        return found
    legal = data(intake)["demographics"].get("legal_name") or ""
    if not legal or _name_key(typed_name) != _name_key(legal):
        raise IntakeInvalid({f"consent_{kind}": _l("Type your full legal name exactly as under About you.")})
    if user_id is None:
        user_id = actor.id if actor.type == "user" else session.get(Patient, intake.patient_id).user_id
    version = CONSENTS[kind][0]
    consent = IntakeConsent(intake_id=intake.id, patient_id=intake.patient_id, kind=kind, wording_version=version,
                            typed_name=" ".join(typed_name.split()), signed_at=now, signed_by_id=user_id)
    session.add(consent)
    session.flush()
    audit.record(session, actor=actor, action="consent.signed", patient_id=intake.patient_id,
                 appointment_id=intake.appointment_id, at=now,
                 details={"intake_id": intake.id, "consent_id": consent.id, "kind": kind, "version": version})
    return consent


# -- submit and attach ----------------------------------------------------------------------------

def submit(session: Session, intake: Intake, *, now: datetime, actor: Actor,
           expected_version: int | None = None) -> Intake:
    """draft -> submitted once every required section is complete (IntakeInvalid names what is not)."""
    session.refresh(intake, with_for_update=True)
    if intake.status == "submitted":
        raise Ignored("intake: already submitted")
    if expected_version is not None and expected_version != intake.version:
        raise IntakeConflict(_l("This intake was changed in another tab or window since you opened this page."),
                             current_version=intake.version)
    need = missing(session, intake)
    if need:
        raise IntakeInvalid(need)
    intake.transition("submit")
    intake.submitted_at = now
    intake.updated_at = now
    intake.version += 1
    previous = last_submitted(session, intake.patient_id, before_id=intake.id)
    intake.previous_intake_id = previous.id if previous is not None else None
    session.flush()
    audit.record(session, actor=actor, action="intake.submitted", patient_id=intake.patient_id,
                 appointment_id=intake.appointment_id, at=now,
                 details={"intake_id": intake.id, "appointment_type_id": intake.appointment_type_id,
                          "self_pay": self_pay(intake), "previous_intake_id": intake.previous_intake_id})
    return intake


def attach(session: Session, intake: Intake, appointment: Appointment, *, actor: Actor,
           now: datetime | None = None) -> Intake:
    """Tie the intake to the appointment (the hybrid hold; a non-hybrid booking's link). An intake
    already used by another booked appointment is not moved (IntakeConflict)."""
    if intake.patient_id != appointment.patient_id or intake.appointment_type_id != appointment.type_id:
        raise IntakeInvalid({"intake": _l("This intake is for another visit.")})
    if intake.appointment_id == appointment.id:
        return intake
    if intake.appointment_id is not None:
        current = session.get(Appointment, intake.appointment_id)
        if current is not None and current.status in BOOKED:
            raise IntakeConflict(_l("This intake belongs to another booking."), current_version=intake.version)
    intake.appointment_id = appointment.id
    session.flush()
    audit.record(session, actor=actor, action="intake.attached", patient_id=intake.patient_id,
                 appointment_id=appointment.id, at=now,
                 details={"intake_id": intake.id, "status": intake.status})
    return intake


def ready_for_booking(session: Session, *, patient_id: int, appointment_type: AppointmentType, now: datetime,
                      intake_id: int | None = None) -> tuple[Intake, Estimate] | None:
    """For a hybrid type: the patient's submitted intake of this type (the one named, else the newest)
    with its estimate, recent enough and not used by another booking; None when the patient must fill
    intake first."""
    query = (select(Intake).where(Intake.patient_id == patient_id,
                                  Intake.appointment_type_id == appointment_type.id,
                                  Intake.status == "submitted", Intake.submitted_at > now - BOOKING_VALID_FOR)
             .order_by(Intake.submitted_at.desc(), Intake.id.desc()))
    if intake_id is not None:
        query = query.where(Intake.id == intake_id)
    for intake in session.scalars(query.limit(5)):
        if intake.appointment_id is not None:
            current = session.get(Appointment, intake.appointment_id)
            if current is not None and current.status in BOOKED:
                continue
        estimate = latest_estimate(session, intake)
        if estimate is not None:
            return intake, estimate
    return None


# -- what changed since last time --------------------------------------------------------------

def snapshot(session: Session, intake: Intake) -> dict:
    """The intake flattened for reading and comparing: {section: {field: text}}."""
    values = data(intake)
    appointment_type = session.get(AppointmentType, intake.appointment_type_id)
    labels = {q["key"]: q["label"] for q in questions(appointment_type)} if appointment_type else {}
    out = {"demographics": {name: values["demographics"].get(name) or "" for name in DEMOGRAPHIC_FIELDS},
           "reason": {"reason": values["reason"]},
           "answers": {labels.get(k, k): str(v) for k, v in values["answers"].items()},
           "insurance": {}}
    out["demographics"]["sex"] = SEX_LABELS.get(out["demographics"]["sex"], out["demographics"]["sex"])
    if values["self_pay"]:
        out["insurance"]["self_pay"] = "Pays themselves (no insurance)"
    for rank, coverage in coverages_of(session, intake).items():
        out["insurance"].update({
            f"{rank}_payer": coverage.payer.name if coverage.payer else coverage.payer_id,
            f"{rank}_member_id": coverage.member_id, f"{rank}_group_number": coverage.group_number or "",
            f"{rank}_plan_name": coverage.plan_name or "", f"{rank}_subscriber_name": coverage.subscriber_name,
            f"{rank}_subscriber_birth_date": coverage.subscriber_birth_date,
            f"{rank}_subscriber_relationship": RELATIONSHIP_LABELS.get(coverage.subscriber_relationship,
                                                                       coverage.subscriber_relationship)})
    return out


def label(field: str) -> str:
    for rank in RANKS:
        if field.startswith(rank + "_"):
            return f"{rank.title()} insurance: {LABELS.get(field[len(rank) + 1:], field[len(rank) + 1:]).lower()}"
    return LABELS.get(field, field)


def diff(previous_data: dict | None, data_now: dict) -> list[Change]:
    """What differs between two snapshots (``snapshot``), field by field, in reading order."""
    previous_data = previous_data or {}
    changes = []
    for section in ("demographics", "reason", "answers", "insurance"):
        before, after = previous_data.get(section) or {}, data_now.get(section) or {}
        for name in list(after) + [n for n in before if n not in after]:
            old, new = before.get(name) or None, after.get(name) or None
            if (old or "") != (new or ""):
                changes.append(Change(section, name, name if section == "answers" else label(name), old, new))
    return changes
