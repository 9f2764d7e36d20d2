"""The basic EMR: an encounter per visit, its SOAP draft, diagnoses, billing lines, signing, addenda.

    Encounter: open -> signed              (ENCOUNTER_TRANSITIONS, app/models/emr.py)

- ``open_encounter``: one per appointment (a second call, or a concurrent one, finds it: INSERT ...
  ON CONFLICT DO NOTHING then SELECT). Opening on a confirmed visit checks the patient in.
- Drafts are a compare-and-swap on ``version``: ``save_draft`` runs ``UPDATE ... WHERE version =
  expected AND status = 'open' RETURNING version``; when another tab saved first it raises
  ``DraftConflict`` (the current version and text, so the caller keeps the typed text and can
  offer a merge). Every draft change (text, diagnoses, lines) bumps the version, so a stale tab
  always sees a conflict instead of overwriting.
- ``sign`` locks the row, refuses a stale version or an incomplete note, prices every line at the
  date of service (the appointment's start in the clinic's timezone; the fee schedule entry in
  force is copied onto the line), flushes the LINES first (the trigger refuses line changes once
  the encounter is signed), then flips the encounter to signed with the total and a SHA-256
  ``content_hash`` (also in the ``encounter.signed`` audit row), completes a checked-in visit and
  opens the visit charge (``visit_charges.open_case``). A second signing returns the signed
  encounter and charges nothing.
- Addenda are written signed and hashed; the database refuses to change them.

Never in audit details or logs: the note's text, diagnosis codes. Only ids, versions, positions,
billing codes, counts, totals and hashes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.models import Appointment, BillingCode, Encounter, EncounterDiagnosis, EncounterLine, Provider
from app.models.billing import FeeScheduleEntry
from app.models.emr import MAX_DIAGNOSES, MAX_LINES, SOAP_FIELDS, Addendum
from app.services import DomainError, audit, booking, codes, fees, staffing, visit_charges
from app.services.audit import Actor

TEXT_MAX = 20_000                     # characters per SOAP field or addendum
OPEN_FROM = ("check_in", "telehealth", "day_view")
OPENABLE = ("confirmed", "checked_in", "completed")
MAX_POINTERS = 4
SOAP_LABELS = {"subjective": "Subjective", "objective": "Objective", "assessment": "Assessment", "plan": "Plan"}


class EncounterError(DomainError):
    """A refused change; the message is for the provider."""


class EncounterSigned(EncounterError):
    def __init__(self, message: str = "This note has been signed: it can no longer be changed. "
                                      "Write an addendum to correct it."):
        super().__init__(message)


class SignRefused(EncounterError):
    """The note cannot be signed yet (no lines, no diagnoses, a price missing)."""


class DraftConflict(EncounterError):
    """Another tab or window saved first. ``current_version`` and ``current`` (the saved SOAP text)
    let the caller keep what was typed and offer a merge."""

    def __init__(self, current_version: int, current: dict[str, str]):
        super().__init__("This note was changed in another tab or window — your text is kept below; "
                         "reload to merge.")
        self.current_version = current_version
        self.current = current


# -- opening --------------------------------------------------------------------------------------

def open_encounter(session: Session, appointment: Appointment, *, actor: Actor, user, now: datetime,
                   source: str) -> Encounter:
    """The visit's encounter, opened once (checked in first when the visit is only confirmed)."""
    if source not in OPEN_FROM:
        raise ValueError(f"open_encounter: unknown source {source!r}")
    existing = find_for_appointment(session, appointment.id)
    if existing is not None:
        return existing
    if appointment.status not in OPENABLE:
        raise EncounterError("A note can be started only for a confirmed, checked-in or completed visit.")
    if appointment.status == "confirmed":
        booking.mark(session, appointment, "check_in", actor=actor, now=now)
    inserted = session.execute(
        pg_insert(Encounter).values(
            appointment_id=appointment.id, patient_id=appointment.patient_id, provider_id=appointment.provider_id,
            status="open", version=1, opened_at=now, opened_by_id=getattr(user, "id", None), opened_from=source,
            updated_at=now)
        .on_conflict_do_nothing(index_elements=["appointment_id"])
        .returning(Encounter.id)).scalar()
    encounter = find_for_appointment(session, appointment.id)
    if inserted is not None:
        audit.record(session, actor=actor, action="encounter.opened", patient_id=appointment.patient_id,
                     appointment_id=appointment.id, encounter_id=encounter.id, at=now,
                     details={"source": source})
    return encounter


def find_for_appointment(session: Session, appointment_id: int) -> Encounter | None:
    return session.scalar(select(Encounter).where(Encounter.appointment_id == appointment_id)
                          .execution_options(populate_existing=True))


def get(session: Session, encounter_id: int) -> Encounter | None:
    return session.get(Encounter, encounter_id, populate_existing=True)


def _locked(session: Session, encounter_id: int) -> Encounter:
    encounter = session.scalar(select(Encounter).where(Encounter.id == encounter_id).with_for_update()
                               .execution_options(populate_existing=True))
    if encounter is None:
        raise EncounterError("That note does not exist.")
    return encounter


def _editable(session: Session, encounter_id: int, expected_version: int | None) -> Encounter:
    """The open encounter, locked; DraftConflict when the caller's version is stale."""
    encounter = _locked(session, encounter_id)
    if encounter.is_signed:
        raise EncounterSigned()
    if expected_version is not None and encounter.version != expected_version:
        raise DraftConflict(encounter.version, soap_of(encounter))
    return encounter


def _bump(encounter: Encounter, now: datetime) -> int:
    encounter.version += 1
    encounter.updated_at = now
    return encounter.version


def _coding_changed(session: Session, encounter: Encounter, *, reread: list[str], action: str, details: dict,
                    actor: Actor, now: datetime) -> None:
    """A diagnosis or line added or removed: a new version, the changed collections re-read, and the
    audit row (its details end with the new version)."""
    version = _bump(encounter, now)
    session.flush()
    session.refresh(encounter, reread)
    audit.record(session, actor=actor, action=action, patient_id=encounter.patient_id,
                 appointment_id=encounter.appointment_id, encounter_id=encounter.id, at=now,
                 details={**details, "version": version})


def soap_of(encounter: Encounter) -> dict[str, str]:
    return {name: getattr(encounter, name) or "" for name in SOAP_FIELDS}


# -- the SOAP draft -------------------------------------------------------------------------------

def clean_text(value, *, what: str) -> str:
    """A text field as stored: \\n line ends, no NULs, at most TEXT_MAX characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EncounterError(f"{what} must be text.")
    if "\x00" in value:
        raise EncounterError(f"{what} contains a character that is not allowed.")
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if len(value) > TEXT_MAX:
        raise EncounterError(f"{what} is {len(value):,} characters long: the limit is {TEXT_MAX:,}.")
    return value


def save_draft(session: Session, encounter_id: int, *, expected_version: int, fields: dict, actor: Actor,
               now: datetime) -> Encounter:
    """Save the SOAP text given (any of subjective/objective/assessment/plan) if ``expected_version``
    is still the draft's version; bumps it. DraftConflict when another tab saved first."""
    unknown = set(fields) - set(SOAP_FIELDS)
    if unknown:
        raise EncounterError("Unknown note section.")
    values = {name: clean_text(text, what=SOAP_LABELS[name]) for name, text in fields.items()}
    current = get(session, encounter_id)
    if current is None:
        raise EncounterError("That note does not exist.")
    if current.is_signed:
        raise EncounterSigned()
    if current.version == expected_version and all((getattr(current, k) or "") == v for k, v in values.items()):
        return current                     # nothing changed (a blur after the last keystroke's save)
    new_version = session.execute(
        update(Encounter)
        .where(Encounter.id == encounter_id, Encounter.version == expected_version, Encounter.status == "open")
        .values(version=Encounter.version + 1, updated_at=now, **{k: (v or None) for k, v in values.items()})
        .returning(Encounter.version)
        .execution_options(synchronize_session=False)).scalar()
    encounter = get(session, encounter_id)
    if new_version is None:
        if encounter.is_signed:
            raise EncounterSigned()
        raise DraftConflict(encounter.version, soap_of(encounter))
    audit.record(session, actor=actor, action="encounter.draft_saved", patient_id=encounter.patient_id,
                 appointment_id=encounter.appointment_id, encounter_id=encounter.id, at=now,
                 details={"version": new_version})
    return encounter


# -- diagnoses ------------------------------------------------------------------------------------

def normalize_diagnosis(raw: str) -> str:
    """ "j06.9" -> "J06.9"; "J069" -> "J06.9"; None when not a billable ICD-10-CM code."""
    text = (raw or "").strip()[:16]
    found = codes.diagnosis(text) if text else None
    return found.code if found else None


def add_diagnosis(session: Session, encounter_id: int, code: str, *, actor: Actor, now: datetime,
                  expected_version: int | None = None) -> EncounterDiagnosis:
    encounter = _editable(session, encounter_id, expected_version)
    normal = normalize_diagnosis(code)
    if normal is None:
        shown = (code or "").strip()[:16] or "That"
        raise EncounterError(f"{shown} is not a billable ICD-10-CM code: pick one from the search.")
    if any(d.code == normal for d in encounter.diagnoses):
        raise EncounterError(f"{normal} is already on this note.")
    if len(encounter.diagnoses) >= MAX_DIAGNOSES:
        raise EncounterError(f"A note has at most {MAX_DIAGNOSES} diagnoses.")
    row = EncounterDiagnosis(encounter_id=encounter.id, position=len(encounter.diagnoses) + 1, code=normal)
    session.add(row)
    _coding_changed(session, encounter, reread=["diagnoses"], action="encounter.diagnosis_added",
                    details={"position": row.position}, actor=actor, now=now)
    return row


def remove_diagnosis(session: Session, encounter_id: int, diagnosis_id: int, *, actor: Actor, now: datetime,
                     expected_version: int | None = None) -> None:
    """Remove a diagnosis and renumber the others (and the lines' pointers to them). Refused while
    a line points to it."""
    encounter = _editable(session, encounter_id, expected_version)
    row = next((d for d in encounter.diagnoses if d.id == diagnosis_id), None)
    if row is None:
        raise EncounterError("That diagnosis is no longer on this note.")
    pointing = [line.position for line in encounter.lines if row.position in line.diagnosis_pointers]
    if pointing:
        which = ", ".join(str(p) for p in pointing)
        raise EncounterError(f"Diagnosis {row.position} ({row.code}) is pointed to by line {which}: "
                             f"remove it from the line first.")
    removed = row.position
    session.delete(row)
    session.flush()
    for other in sorted(encounter.diagnoses, key=lambda d: d.position):      # ascending: each slot is free
        if other is not row and other.position > removed:
            other.position -= 1
            session.flush()
    for line in encounter.lines:
        if any(p > removed for p in line.diagnosis_pointers):
            line.diagnosis_pointers = [p - 1 if p > removed else p for p in line.diagnosis_pointers]
    _coding_changed(session, encounter, reread=["diagnoses", "lines"], action="encounter.diagnosis_removed",
                    details={"position": removed}, actor=actor, now=now)


# -- billing lines --------------------------------------------------------------------------------

def add_line(session: Session, encounter_id: int, *, code_id: int | None, modifier: str | None, units,
             pointers, actor: Actor, now: datetime, expected_version: int | None = None) -> EncounterLine:
    encounter = _editable(session, encounter_id, expected_version)
    code = session.get(BillingCode, code_id) if code_id else None
    if code is None or not code.active:
        raise EncounterError("Pick a billing code from the list.")
    try:
        modifier = fees.normalize_modifier(modifier)
    except fees.PriceError:
        raise EncounterError("A modifier is two letters or digits (like 95 or GT), or empty for none.") from None
    try:
        units = int(units)
    except (TypeError, ValueError):
        raise EncounterError("Units must be a whole number from 1 to 99.") from None
    if not 1 <= units <= 99:
        raise EncounterError("Units must be a whole number from 1 to 99.")
    chosen: list[int] = []
    for raw in pointers or ():
        try:
            pointer = int(raw)
        except (TypeError, ValueError):
            raise EncounterError("Diagnosis pointers are the numbers of the diagnoses.") from None
        if pointer not in chosen:
            chosen.append(pointer)
    if not encounter.diagnoses:
        raise EncounterError("Add a diagnosis first: each line points to at least one.")
    if not 1 <= len(chosen) <= MAX_POINTERS:
        raise EncounterError(f"Point the line to 1 to {MAX_POINTERS} of the diagnoses.")
    if any(not 1 <= p <= len(encounter.diagnoses) for p in chosen):
        raise EncounterError("A pointer names a diagnosis that is not on this note.")
    if len(encounter.lines) >= MAX_LINES:
        raise EncounterError(f"A note has at most {MAX_LINES} billing lines.")
    line = EncounterLine(encounter_id=encounter.id, position=len(encounter.lines) + 1, billing_code_id=code.id,
                         code_system=code.system, code=code.code, modifier=modifier, units=units,
                         diagnosis_pointers=chosen)
    session.add(line)
    _coding_changed(session, encounter, reread=["lines"], action="encounter.line_added",
                    details={"position": line.position, "billing_code_id": code.id, "system": code.system,
                             "code": code.code, "modifier": modifier, "units": units}, actor=actor, now=now)
    return line


def remove_line(session: Session, encounter_id: int, line_id: int, *, actor: Actor, now: datetime,
                expected_version: int | None = None) -> None:
    encounter = _editable(session, encounter_id, expected_version)
    line = next((li for li in encounter.lines if li.id == line_id), None)
    if line is None:
        raise EncounterError("That line is no longer on this note.")
    removed = line.position
    session.delete(line)
    session.flush()
    for other in sorted(encounter.lines, key=lambda li: li.position):
        if other is not line and other.position > removed:
            other.position -= 1
            session.flush()
    _coding_changed(session, encounter, reread=["lines"], action="encounter.line_removed",
                    details={"position": removed}, actor=actor, now=now)


# -- pricing --------------------------------------------------------------------------------------

def date_of_service(session: Session, encounter: Encounter) -> date:
    """The visit's date at the clinic (its timezone): the date whose prices apply."""
    return fees.clinic_today(session, encounter.appointment.starts_at)


def price_entry(session: Session, code_id: int, modifier: str, on_date: date) -> FeeScheduleEntry | None:
    """The fee schedule row ``fees.price_for`` prices from (the modifier's price, else the plain one)."""
    modifier = fees.normalize_modifier(modifier)
    return session.scalar(
        select(FeeScheduleEntry)
        .where(FeeScheduleEntry.billing_code_id == code_id, FeeScheduleEntry.modifier.in_({modifier, ""}),
               FeeScheduleEntry.effective_from <= on_date)
        .order_by(case((FeeScheduleEntry.modifier == modifier, 0), else_=1), FeeScheduleEntry.effective_from.desc())
        .limit(1))


@dataclass
class PricedLine:
    line: EncounterLine
    unit_price_cents: int | None
    amount_cents: int | None


@dataclass
class Preview:
    on_date: date
    lines: list[PricedLine] = field(default_factory=list)
    total_cents: int = 0
    missing: list[EncounterLine] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def preview_total(session: Session, encounter: Encounter, on_date: date | None = None) -> Preview:
    """What the lines cost at ``on_date`` (the date of service by default); a signed note shows the
    prices it was signed with."""
    on_date = on_date or date_of_service(session, encounter)
    preview = Preview(on_date=on_date)
    for line in encounter.lines:
        if line.amount_cents is not None:
            unit = line.unit_price_cents
        else:
            unit = fees.price_for(session, line.billing_code_id, line.modifier, on_date)
        amount = unit * line.units if unit is not None else None
        preview.lines.append(PricedLine(line, unit, amount))
        if amount is None:
            preview.missing.append(line)
        else:
            preview.total_cents += amount
    return preview


def sign_problems(session: Session, encounter: Encounter, preview: Preview | None = None) -> list[str]:
    """What stands between the draft and a signature, in plain words (empty: it can be signed)."""
    problems = []
    if not encounter.diagnoses:
        problems.append("Add at least one diagnosis.")
    if not encounter.lines:
        problems.append("Add at least one billing line.")
    preview = preview or preview_total(session, encounter)
    for line in preview.missing:
        problems.append(f"Line {line.position} ({line.code_system} {line.code}"
                        f"{' ' + line.modifier if line.modifier else ''}) has no price in force on "
                        f"{preview.on_date.isoformat()}: ask an administrator to set it in the fee schedule.")
    count = len(encounter.diagnoses)
    for line in encounter.lines:
        if any(not 1 <= p <= count for p in line.diagnosis_pointers):
            problems.append(f"Line {line.position} points to a diagnosis that is not on the note.")
    return problems


# -- hashing --------------------------------------------------------------------------------------

def _instant(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def canonical(encounter: Encounter) -> bytes:
    """The signed content as canonical JSON (sorted keys, no spaces, UTF-8)."""
    body = {
        "encounter_id": encounter.id,
        "appointment_id": encounter.appointment_id,
        "patient_id": encounter.patient_id,
        "provider_id": encounter.provider_id,
        "soap": soap_of(encounter),
        "diagnoses": [{"position": d.position, "system": "ICD-10-CM", "code": d.code}
                      for d in sorted(encounter.diagnoses, key=lambda d: d.position)],
        "lines": [{"position": li.position, "system": li.code_system, "code": li.code, "modifier": li.modifier,
                   "units": li.units, "pointers": list(li.diagnosis_pointers),
                   "unit_price_cents": li.unit_price_cents, "amount_cents": li.amount_cents,
                   "fee_schedule_entry_id": li.fee_schedule_entry_id}
                  for li in sorted(encounter.lines, key=lambda li: li.position)],
        "total_cents": encounter.total_cents,
        "signed_by_id": encounter.signed_by_id,
        "signed_at": _instant(encounter.signed_at),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(encounter: Encounter) -> str:
    """SHA-256 (hex) of ``canonical(encounter)``: recomputable from the stored rows at any time."""
    return hashlib.sha256(canonical(encounter)).hexdigest()


def addendum_hash(addendum: Addendum, encounter: Encounter) -> str:
    body = {"encounter_id": encounter.id, "note_hash": encounter.content_hash, "text": addendum.text,
            "signed_by_id": addendum.signed_by_id, "signed_at": _instant(addendum.signed_at)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


# -- signing --------------------------------------------------------------------------------------

def _may_sign(encounter: Encounter, user) -> None:
    if user is None or encounter.appointment.provider.user_id != user.id:
        raise EncounterError("Only the visit's provider can sign this note.")


def sign(session: Session, encounter_id: int, *, expected_version: int, user, actor: Actor,
         now: datetime) -> Encounter:
    """Price, freeze and hash the note; complete the visit; open its charge. A second signing
    returns the signed encounter and does nothing more."""
    encounter = _locked(session, encounter_id)
    if encounter.is_signed:
        return encounter
    _may_sign(encounter, user)
    if encounter.version != expected_version:
        raise DraftConflict(encounter.version, soap_of(encounter))
    preview = preview_total(session, encounter)
    problems = sign_problems(session, encounter, preview)
    if problems:
        raise SignRefused(" ".join(problems))
    for priced in preview.lines:
        line = priced.line
        entry = price_entry(session, line.billing_code_id, line.modifier, preview.on_date)
        line.unit_price_cents = entry.price_cents
        line.amount_cents = entry.price_cents * line.units
        line.fee_schedule_entry_id = entry.id
    session.flush()                      # the lines first: once the encounter is signed they are frozen
    encounter.signed_at = now
    encounter.signed_by_id = user.id
    encounter.total_cents = sum(line.amount_cents for line in encounter.lines)
    encounter.transition("sign")
    encounter.content_hash = content_hash(encounter)
    encounter.updated_at = now
    session.flush()
    appointment = encounter.appointment
    audit.record(session, actor=actor, action="encounter.signed", patient_id=encounter.patient_id,
                 appointment_id=encounter.appointment_id, encounter_id=encounter.id, at=now,
                 details={"content_hash": encounter.content_hash, "total_cents": encounter.total_cents,
                          "lines": len(encounter.lines), "version": encounter.version})
    if appointment.status == "checked_in":
        booking.mark(session, appointment, "complete", actor=actor, now=now)
    visit_charges.open_case(session, encounter, actor=actor, now=now)
    from app.services import claims     # hybrid visits: the claim (or a self-pay reconciliation)

    claims.open_claim(session, encounter, actor=actor, now=now)
    return encounter


# -- addenda --------------------------------------------------------------------------------------

def add_addendum(session: Session, encounter_id: int, *, text: str, user, actor: Actor, now: datetime) -> Addendum:
    encounter = _locked(session, encounter_id)
    if not encounter.is_signed:
        raise EncounterError("Addenda are for signed notes: change the draft instead.")
    _may_sign(encounter, user)
    text = clean_text(text, what="The addendum").strip()
    if not text:
        raise EncounterError("Write the addendum first.")
    addendum = Addendum(encounter_id=encounter.id, text=text, signed_by_id=user.id, signed_at=now)
    addendum.content_hash = addendum_hash(addendum, encounter)
    session.add(addendum)
    session.flush()
    audit.record(session, actor=actor, action="encounter.addendum", patient_id=encounter.patient_id,
                 appointment_id=encounter.appointment_id, encounter_id=encounter.id, at=now,
                 details={"addendum_id": addendum.id, "content_hash": addendum.content_hash})
    return addendum


# -- the unsigned-notes worklist --------------------------------------------------------------------

@dataclass
class WorkItem:
    appointment: Appointment
    encounter: Encounter | None         # None: a visit seen today with no note yet
    age: timedelta                      # since the visit's start (never negative)


def worklist(session: Session, *, provider_id: int, now: datetime) -> list[WorkItem]:
    """The provider's unsigned notes, oldest first, then today's checked-in or completed visits
    that have no note."""
    items = [WorkItem(e.appointment, e, max(now - e.appointment.starts_at, timedelta(0)))
             for e in session.scalars(select(Encounter).join(Encounter.appointment)
                                      .where(Encounter.provider_id == provider_id, Encounter.status == "open")
                                      .order_by(Appointment.starts_at, Encounter.id))]
    provider = session.get(Provider, provider_id)
    if provider is not None:
        start, end = staffing.local_range(provider, staffing.local_today(provider, now), 1)
        seen = session.scalars(
            select(Appointment)
            .where(Appointment.provider_id == provider_id, Appointment.status.in_(("checked_in", "completed")),
                   Appointment.starts_at >= start, Appointment.starts_at < end,
                   ~exists().where(Encounter.appointment_id == Appointment.id))
            .order_by(Appointment.starts_at))
        items.extend(WorkItem(a, None, max(now - a.starts_at, timedelta(0))) for a in seen)
    return items


def unsigned_count(session: Session, *, provider_id: int) -> int:
    return session.scalar(select(func.count(Encounter.id))
                          .where(Encounter.provider_id == provider_id, Encounter.status == "open")) or 0


def age_label(age: timedelta) -> str:
    """ "5 min", "2 h", "3 days": how long a note has waited."""
    minutes = int(age.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} days"
