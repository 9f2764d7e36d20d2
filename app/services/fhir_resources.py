"""FHIR R4 (4.3.0, ``fhir.resources.R4B``) resources built from the clinic's rows (issue 17).

``REGISTRY`` is the one list of what the API serves: each ``ResourceType`` names its table, its
search parameters (how each narrows the query), how a row becomes a resource and which patient
a row is about (for the PHI audit). The routes (app/blueprints/fhir), the CapabilityStatement
(``capability_statement``), ``$everything`` and the bulk export all read it, so what the metadata
says is what answers. Every resource is validated by its R4B model before it leaves (``to_json``).

Slots are not stored: they are computed by the availability engine (app/services/availability.py)
for a provider's schedule, one Schedule per provider, one Slot per open start and visit type.
Nothing here imports Flask's request: the blueprint passes parsed arguments in.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, joinedload, object_session, selectinload

from app.models import (Appointment, AppointmentType, AuditEvent, Claim, Coverage, Encounter, EncounterLine,
                        Patient, Provider, Remittance, User)

FHIR_VERSION = "4.3.0"
SYSTEM = "urn:clinic-portal"
NPI = "http://hl7.org/fhir/sid/us-npi"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CODE_SYSTEMS = {"CPT": "http://www.ama-assn.org/go/cpt",
                "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"}
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class SearchError(ValueError):
    """A search parameter the server cannot honour (400 with an OperationOutcome)."""


# -- R4B validation ------------------------------------------------------------------------------

_MODELS: dict[str, Any] = {}


def model_of(resource_type: str):
    if resource_type not in _MODELS:
        module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
        _MODELS[resource_type] = getattr(module, resource_type)
    return _MODELS[resource_type]


def to_json(resource: dict) -> dict:
    """The resource validated by its R4B model, as JSON-ready data (raises on an invalid one)."""
    model = model_of(resource["resourceType"]).model_validate(resource)
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


# -- small builders ------------------------------------------------------------------------------

def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _money(cents: int | None) -> dict | None:
    return None if cents is None else {"value": round(cents / 100, 2), "currency": "USD"}


def _ref(resource_type: str, id_: Any, display: str | None = None) -> dict:
    ref = {"reference": f"{resource_type}/{id_}"}
    if display:
        ref["display"] = display
    return ref


def _code(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": CODE_SYSTEMS.get(system, system if ":" in system else f"{SYSTEM}:code:{system}"),
              "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _meta(updated: datetime | None) -> dict:
    return {"lastUpdated": _instant(updated)} if updated else {}


# -- builders: one per resource type ---------------------------------------------------------------

def build_patient(session: Session, patient: Patient) -> dict:
    user = patient.user
    telecom = [{"system": "email", "value": user.email, "use": "home"}]
    if user.phone:
        telecom.append({"system": "phone", "value": user.phone, "use": "mobile"})
    resource = {"resourceType": "Patient", "id": str(patient.id), "meta": _meta(patient.created_at),
                "identifier": [{"system": f"{SYSTEM}:patient", "value": str(patient.id)}],
                "active": bool(user.is_active_account), "name": [{"text": user.full_name}],
                "telecom": telecom}
    if user.locale:
        resource["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": user.locale}]},
                                      "preferred": True}]
    return resource


def build_practitioner(session: Session, provider: Provider) -> dict:
    identifiers = [{"system": f"{SYSTEM}:practitioner", "value": str(provider.id)}]
    if provider.npi:
        identifiers.append({"system": NPI, "value": provider.npi})
    return {"resourceType": "Practitioner", "id": str(provider.id), "identifier": identifiers,
            "active": bool(provider.is_active), "name": [{"text": provider.user.full_name}]}


def build_practitioner_role(session: Session, provider: Provider) -> dict:
    return {"resourceType": "PractitionerRole", "id": str(provider.id), "active": bool(provider.is_active),
            "practitioner": _ref("Practitioner", provider.id, provider.user.full_name),
            "specialty": [{"text": provider.specialty.name}],
            "code": [{"text": "Clinician"}]}


def build_schedule(session: Session, provider: Provider) -> dict:
    types = [t for t in provider.types if t.is_active]
    resource = {"resourceType": "Schedule", "id": str(provider.id), "active": bool(provider.is_active),
                "actor": [_ref("Practitioner", provider.id, provider.user.full_name)]}
    if types:
        resource["serviceType"] = [{"coding": [{"system": f"{SYSTEM}:appointment-type", "code": str(t.id),
                                                "display": t.name}]} for t in types]
    return resource


def build_slot(session: Session, slot) -> dict:
    return {"resourceType": "Slot", "id": slot_id(slot), "schedule": _ref("Schedule", slot.provider_id),
            "status": "free", "start": _instant(slot.starts_at), "end": _instant(slot.ends_at),
            "serviceType": [{"coding": [{"system": f"{SYSTEM}:appointment-type", "code": str(slot.type_id)}]}]}


APPOINTMENT_STATUS = {"held": "pending", "confirmed": "booked", "checked_in": "checked-in",
                      "completed": "fulfilled", "canceled": "cancelled", "no_show": "noshow",
                      "released": "cancelled"}


def build_appointment(session: Session, appt: Appointment) -> dict:
    status = APPOINTMENT_STATUS[appt.status]
    participant_status = "declined" if status == "cancelled" else "accepted"
    return {"resourceType": "Appointment", "id": str(appt.id), "meta": _meta(appt.updated_at),
            "status": status, "start": _instant(appt.starts_at), "end": _instant(appt.ends_at),
            "minutesDuration": max(1, int((appt.ends_at - appt.starts_at).total_seconds() // 60)),
            "created": _instant(appt.created_at),
            "serviceType": [{"coding": [{"system": f"{SYSTEM}:appointment-type", "code": str(appt.type_id)}]}],
            "appointmentType": {"text": appt.modality},
            "participant": [{"actor": _ref("Patient", appt.patient_id), "status": participant_status,
                             "required": "required"},
                            {"actor": _ref("Practitioner", appt.provider_id), "status": participant_status,
                             "required": "required"}]}


ENCOUNTER_STATUS = {"open": "in-progress", "signed": "finished"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def build_encounter(session: Session, encounter: Encounter) -> dict:
    appt = encounter.appointment
    klass = {"system": ACT_CODE, "code": "VR", "display": "virtual"} if appt.modality == "telehealth" else \
        {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}
    resource = {"resourceType": "Encounter", "id": str(encounter.id), "meta": _meta(encounter.updated_at),
                "status": ENCOUNTER_STATUS[encounter.status], "class": klass,
                "subject": _ref("Patient", encounter.patient_id),
                "participant": [{"individual": _ref("Practitioner", encounter.provider_id)}],
                "appointment": [_ref("Appointment", encounter.appointment_id)],
                "period": {"start": _instant(encounter.opened_at)}}
    if encounter.signed_at:
        resource["period"]["end"] = _instant(encounter.signed_at)
    if encounter.diagnoses:
        resource["reasonCode"] = [_code(ICD10, d.code) for d in sorted(encounter.diagnoses, key=lambda d: d.position)]
    return resource


COVERAGE_STATUS = {"active": "active", "replaced": "cancelled"}
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"


def build_coverage(session: Session, coverage: Coverage) -> dict:
    return {"resourceType": "Coverage", "id": str(coverage.id), "status": COVERAGE_STATUS[coverage.status],
            "subscriberId": coverage.member_id, "beneficiary": _ref("Patient", coverage.patient_id),
            "relationship": {"coding": [{"system": SUBSCRIBER_RELATIONSHIP,
                                         "code": coverage.subscriber_relationship}]},
            "payor": [{"identifier": {"system": f"{SYSTEM}:payer", "value": coverage.payer_id},
                       "display": coverage.payer.name}],
            "order": 1 if coverage.rank == "primary" else 2}


def build_charge_item(session: Session, line: EncounterLine) -> dict:
    encounter = line.encounter
    resource = {"resourceType": "ChargeItem", "id": str(line.id),
                "status": "billable" if encounter.status == "signed" else "planned",
                "code": _code(line.code_system, line.code), "subject": _ref("Patient", encounter.patient_id),
                "context": _ref("Encounter", encounter.id), "quantity": {"value": line.units},
                "occurrenceDateTime": _instant(encounter.appointment.starts_at),
                "performer": [{"actor": _ref("Practitioner", encounter.provider_id)}]}
    if line.amount_cents is not None:
        resource["priceOverride"] = _money(line.amount_cents)
    if line.modifier:
        resource["code"]["text"] = f"{line.code}-{line.modifier}"
    return resource


CLAIM_STATUS = {"draft": "draft", "submitted": "active", "adjudicated": "active", "denied": "active",
                "reconciled": "active"}
CLAIM_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]}


def _items(lines: list[dict]) -> list[dict]:
    items = []
    for n, line in enumerate(lines or [], start=1):
        item = {"sequence": int(line.get("line_number") or n),
                "productOrService": _code(line.get("code_system") or "LOCAL", str(line.get("code")))}
        if line.get("units"):
            item["quantity"] = {"value": line["units"]}
        if line.get("billed_cents") is not None:
            item["net"] = _money(line["billed_cents"])
        items.append(item)
    return items


def _appointment_of(row) -> Appointment:
    return object_session(row).get(Appointment, row.appointment_id)


def build_claim(session: Session, claim: Claim) -> dict:
    appt = _appointment_of(claim)
    resource = {"resourceType": "Claim", "id": str(claim.id), "meta": _meta(claim.updated_at),
                "identifier": [{"system": f"{SYSTEM}:claim", "value": str(claim.uuid)}],
                "status": CLAIM_STATUS[claim.status], "type": CLAIM_TYPE, "use": "claim",
                "patient": _ref("Patient", appt.patient_id), "created": _instant(claim.created_at),
                "provider": _ref("Practitioner", appt.provider_id),
                "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                         "code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": True, "coverage": _ref("Coverage", claim.coverage_id)}],
                "billablePeriod": {"start": _instant(appt.starts_at), "end": _instant(appt.ends_at)},
                "total": _money(claim.billed_cents)}
    items = _items(claim.lines)
    if items:
        resource["item"] = items
    return resource


def build_eob(session: Session, remittance: Remittance) -> dict:
    claim = remittance.claim
    appt = _appointment_of(claim)
    totals = [("submitted", remittance.billed_cents), ("eligible", remittance.allowed_cents),
              ("benefit", remittance.paid_cents)]
    resource = {"resourceType": "ExplanationOfBenefit", "id": str(remittance.id),
                "status": "active", "type": CLAIM_TYPE, "use": "claim",
                "patient": _ref("Patient", appt.patient_id), "created": _instant(remittance.received_at),
                "insurer": {"identifier": {"system": f"{SYSTEM}:payer", "value": claim.coverage.payer_id}},
                "provider": _ref("Practitioner", appt.provider_id), "claim": _ref("Claim", claim.id),
                "outcome": "complete", "disposition": remittance.status,
                "insurance": [{"focal": True, "coverage": _ref("Coverage", claim.coverage_id)}],
                "billablePeriod": {"start": _instant(appt.starts_at), "end": _instant(appt.ends_at)},
                "total": [{"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication",
                                                    "code": code}]}, "amount": _money(cents)}
                          for code, cents in totals],
                "payment": {"amount": _money(remittance.paid_cents)}}
    if remittance.payer_claim_number:
        resource["identifier"] = [{"system": f"{SYSTEM}:payer-claim-number", "value": remittance.payer_claim_number}]
    return resource


AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"


def build_audit_event(session: Session, event: AuditEvent) -> dict:
    action = event.action or ""
    read = action in ("phi.viewed", "phi.break_glass") or action.endswith("_viewed")
    who = {"identifier": {"system": f"{SYSTEM}:{event.actor_type}", "value": str(event.actor_id)}} \
        if event.actor_id is not None else {"display": event.actor_type}
    resource = {"resourceType": "AuditEvent", "id": str(event.seq),
                "type": {"system": AUDIT_TYPE, "code": "rest" if read else "110100",
                         "display": "RESTful Operation" if read else "Application Activity"},
                "subtype": [{"system": f"{SYSTEM}:audit-action", "code": action}],
                "action": "R" if read else "E", "recorded": _instant(event.occurred_at),
                "outcome": "0" if event.outcome == "success" else "4",
                "agent": [{"who": who, "requestor": True,
                           **({"role": [{"text": event.actor_role}]} if event.actor_role else {})}],
                "source": {"observer": {"display": "Clinic Portal"}}}
    entities = []
    if event.patient_id is not None:
        entities.append({"what": _ref("Patient", event.patient_id)})
    for pid in (event.details or {}).get("patient_ids") or ():
        if pid != event.patient_id:
            entities.append({"what": _ref("Patient", pid)})
    if event.appointment_id is not None:
        entities.append({"what": _ref("Appointment", event.appointment_id)})
    if entities:
        resource["entity"] = entities
    return resource


def audit_event_patients(event: AuditEvent) -> list[int]:
    ids = [event.patient_id] if event.patient_id is not None else []
    ids.extend(int(i) for i in (event.details or {}).get("patient_ids") or () if i is not None)
    return ids


# -- search parameters ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    name: str
    type: str                      # FHIR search parameter type: token | date | reference
    doc: str
    apply: Callable[[Select, list[str]], Select] | None = None   # values of every occurrence


def _reference_id(value: str, resource_type: str) -> int:
    value = value.strip()
    if value.startswith(f"{resource_type}/"):
        value = value[len(resource_type) + 1:]
    if not value.isdigit() or len(value) > 9:
        raise SearchError(f"not a {resource_type} reference: {value[:40]!r}")
    return int(value)


def _ids(values: list[str], resource_type: str) -> list[int]:
    out = []
    for value in values:
        out.extend(_reference_id(v, resource_type) for v in value.split(",") if v.strip())
    if not out:
        raise SearchError(f"empty {resource_type} reference")
    return out


def reference_param(name: str, column, resource_type: str, doc: str) -> Param:
    def apply(query: Select, values: list[str]) -> Select:
        for value in values:           # each occurrence ANDs; commas within one OR
            query = query.where(column.in_(_ids([value], resource_type)))
        return query
    return Param(name, "reference", doc, apply)


def id_param(column) -> Param:
    def apply(query: Select, values: list[str]) -> Select:
        for value in values:
            ids = []
            for v in value.split(","):
                v = v.strip()
                if not v.isdigit() or len(v) > 18:
                    return query.where(False)     # no such id: nothing matches
                ids.append(int(v))
            query = query.where(column.in_(ids))
        return query
    return Param("_id", "token", "Logical id", apply)


def token_param(name: str, column, mapping: dict[str, str], doc: str) -> Param:
    """``status=booked,pending``: FHIR codes, mapped back to the rows' own values."""
    def apply(query: Select, values: list[str]) -> Select:
        for value in values:
            codes = {v.strip().split("|")[-1] for v in value.split(",") if v.strip()}
            if not codes:
                raise SearchError(f"empty {name}")
            query = query.where(column.in_([own for own, code in mapping.items() if code in codes]))
        return query
    return Param(name, "token", doc, apply)


PREFIXES = ("eq", "ne", "ge", "le", "gt", "lt", "sa", "eb", "ap")


def parse_date(value: str) -> tuple[str, datetime, datetime]:
    """``ge2026-12-01`` -> ("ge", start of that day, start of the next); datetimes to the second."""
    value = value.strip()
    prefix = "eq"
    if value[:2] in PREFIXES:
        prefix, value = value[:2], value[2:]
    if prefix not in ("eq", "ge", "le", "gt", "lt"):
        raise SearchError(f"unsupported date prefix {prefix!r}")
    try:
        if re.fullmatch(r"\d{4}", value):
            lo = datetime(int(value), 1, 1, tzinfo=timezone.utc)
            hi = datetime(int(value) + 1, 1, 1, tzinfo=timezone.utc)
        elif re.fullmatch(r"\d{4}-\d{2}", value):
            y, m = map(int, value.split("-"))
            lo = datetime(y, m, 1, tzinfo=timezone.utc)
            hi = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=timezone.utc)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            lo = datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=timezone.utc)
            hi = lo + timedelta(days=1)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})", value):
            lo = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
            hi = lo + timedelta(seconds=1)
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise SearchError(f"not a date: {value[:40]!r}") from None
    return prefix, lo, hi


def date_condition(column, value: str):
    prefix, lo, hi = parse_date(value)
    return {"eq": and_(column >= lo, column < hi), "ge": column >= lo, "gt": column >= hi,
            "le": column < hi, "lt": column < lo}[prefix]


def date_param(name: str, column, doc: str) -> Param:
    def apply(query: Select, values: list[str]) -> Select:
        for value in values:
            query = query.where(date_condition(column, value))
        return query
    return Param(name, "date", doc, apply)


# -- the registry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourceType:
    name: str
    model: Any                                     # the table's model (None: computed)
    build: Callable[[Session, Any], dict]
    params: tuple[Param, ...]
    patients_of: Callable[[Any], list[int]]        # whose PHI a row is (the audit)
    base: Callable[[], Select] | None = None       # rows of this type (ordered by ``order``)
    order: Any = None
    compartment: Any = None                        # the column naming the patient ($everything)
    search: Callable | None = None                 # a computed type's own search (Slot)
    read: Callable | None = None                   # a computed type's own read
    doc: str = ""
    phi: bool = True

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _patients_base():
    return select(Patient).join(User, User.id == Patient.user_id).options(joinedload(Patient.user))


def _providers_base():
    return (select(Provider).join(User, User.id == Provider.user_id)
            .options(joinedload(Provider.user), selectinload(Provider.types)))


def _encounters_base():
    return select(Encounter).options(joinedload(Encounter.appointment), selectinload(Encounter.diagnoses))


def _lines_base():
    return (select(EncounterLine).join(Encounter, Encounter.id == EncounterLine.encounter_id)
            .options(joinedload(EncounterLine.encounter).joinedload(Encounter.appointment)))


def _claims_base():
    return select(Claim).join(Appointment, Appointment.id == Claim.appointment_id).options(
        joinedload(Claim.coverage))


def _eobs_base():
    return (select(Remittance).join(Claim, Claim.id == Remittance.claim_id)
            .join(Appointment, Appointment.id == Claim.appointment_id)
            .options(joinedload(Remittance.claim).joinedload(Claim.coverage)))


def _audit_patient(query: Select, values: list[str]) -> Select:
    from sqlalchemy import cast, literal
    from sqlalchemy.dialects.postgresql import JSONB

    for value in values:
        ids = _ids([value], "Patient")
        query = query.where(or_(AuditEvent.patient_id.in_(ids), *[
            AuditEvent.details["patient_ids"].contains(cast(literal(f"[{i}]"), JSONB)) for i in ids]))
    return query


def _audit_action(query: Select, values: list[str]) -> Select:
    for value in values:
        codes = [v.strip().split("|")[-1] for v in value.split(",") if v.strip()]
        query = query.where(AuditEvent.action.in_(codes))
    return query


def _slot_search(session, *, args: dict[str, list[str]], now: datetime) -> list:
    """Every free slot in the window (default the next 7 days, at most 31), sorted by start: the total
    is exact, and the window bounds the work."""
    from app.services import availability
    from app.services.schedule import load_schedules, slot_type

    start, end = now, now + timedelta(days=7)
    for value in args.get("start", []):
        prefix, lo, hi = parse_date(value)
        tick = timedelta(microseconds=1)        # the engine's bounds are inclusive; hi and lt are not
        if prefix in ("ge", "gt"):
            start = max(start, lo if prefix == "ge" else hi)
        elif prefix in ("le", "lt"):
            end = min(end, (hi if prefix == "le" else lo) - tick)
        else:
            start, end = max(start, lo), min(end, hi - tick)
    end = min(end, start + timedelta(days=31))
    for value in args.get("status", []):
        if "free" not in {v.strip() for v in value.split(",")}:
            return []
    query = _providers_base().where(Provider.is_active.is_(True)).order_by(Provider.id)
    for value in args.get("schedule", []):
        query = query.where(Provider.id.in_(_ids([value], "Schedule")))
    providers = list(session.scalars(query).unique())
    if not providers or end <= start:
        return []
    out = []
    loaded = load_schedules(session, providers, now=now, window_start=start, window_end=end)
    by_id = {p.id: p for p in providers}
    for item in loaded:
        provider = by_id[item.schedule.provider_id]
        for appointment_type in provider.types:
            if not appointment_type.is_active:
                continue
            out.extend(availability.slots_for(item.schedule, slot_type(appointment_type), now=now,
                                              start=start, end=end))
    out.sort(key=lambda s: (s.starts_at, s.provider_id, s.type_id))
    return out


def slot_id(slot) -> str:
    return f"{slot.provider_id}-{slot.type_id}-{int(slot.starts_at.timestamp())}"


def _slot_read(session, id_: str, *, now: datetime):
    from app.services import availability

    match = re.fullmatch(r"(\d{1,9})-(\d{1,9})-(\d{1,12})", id_)
    if not match:
        return None
    provider_id, type_id, stamp = map(int, match.groups())
    try:
        starts_at = datetime.fromtimestamp(stamp, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    day = timedelta(days=1)
    for slot in _slot_search(session, args={"schedule": [str(provider_id)], "start": [
            "ge" + _instant(starts_at - day), "le" + _instant(starts_at + day)]}, now=now):
        if slot.type_id == type_id and slot.starts_at == starts_at:
            return slot
    return None


def _none(row) -> list[int]:
    return []


REGISTRY: tuple[ResourceType, ...] = (
    ResourceType("Patient", Patient, build_patient,
                 (id_param(Patient.id),),
                 lambda p: [p.id], _patients_base, Patient.id, Patient.id, doc="The clinic's patients"),
    ResourceType("Practitioner", Provider, build_practitioner,
                 (id_param(Provider.id),), _none, _providers_base, Provider.id, phi=False,
                 doc="Clinicians"),
    ResourceType("PractitionerRole", Provider, build_practitioner_role,
                 (id_param(Provider.id), reference_param("practitioner", Provider.id, "Practitioner",
                                                          "The practitioner")),
                 _none, _providers_base, Provider.id, phi=False, doc="Each clinician's specialty"),
    ResourceType("Schedule", Provider, build_schedule,
                 (id_param(Provider.id), reference_param("actor", Provider.id, "Practitioner",
                                                          "The practitioner")),
                 _none, _providers_base, Provider.id, phi=False, doc="One per clinician"),
    ResourceType("Slot", None, build_slot,
                 (Param("schedule", "reference", "The schedule (clinician)"),
                  Param("start", "date", "Slot start (ge/le/gt/lt/eq); default the next 7 days, at most 31"),
                  Param("status", "token", "Only free slots are listed")),
                 _none, search=_slot_search, read=_slot_read, phi=False,
                 doc="Open slots, computed by the availability engine"),
    ResourceType("Appointment", Appointment, build_appointment,
                 (id_param(Appointment.id),
                  reference_param("patient", Appointment.patient_id, "Patient", "The patient"),
                  reference_param("practitioner", Appointment.provider_id, "Practitioner", "The clinician"),
                  date_param("date", Appointment.starts_at, "Appointment start"),
                  token_param("status", Appointment.status, APPOINTMENT_STATUS, "Appointment status")),
                 lambda a: [a.patient_id], lambda: select(Appointment), Appointment.id,
                 Appointment.patient_id, doc="Booked visits"),
    ResourceType("Encounter", Encounter, build_encounter,
                 (id_param(Encounter.id),
                  reference_param("patient", Encounter.patient_id, "Patient", "The patient"),
                  reference_param("practitioner", Encounter.provider_id, "Practitioner", "The clinician"),
                  date_param("date", Encounter.opened_at, "When the encounter opened"),
                  token_param("status", Encounter.status, ENCOUNTER_STATUS, "Encounter status")),
                 lambda e: [e.patient_id], _encounters_base, Encounter.id, Encounter.patient_id,
                 doc="Visit notes (the note's text is not exported)"),
    ResourceType("Coverage", Coverage, build_coverage,
                 (id_param(Coverage.id),
                  reference_param("patient", Coverage.patient_id, "Patient", "The beneficiary"),
                  reference_param("beneficiary", Coverage.patient_id, "Patient", "The beneficiary"),
                  token_param("status", Coverage.status, COVERAGE_STATUS, "Coverage status")),
                 lambda c: [c.patient_id], lambda: select(Coverage), Coverage.id, Coverage.patient_id,
                 doc="Insurance on file"),
    ResourceType("ChargeItem", EncounterLine, build_charge_item,
                 (id_param(EncounterLine.id),
                  reference_param("patient", Encounter.patient_id, "Patient", "The patient"),
                  reference_param("context", Encounter.id, "Encounter", "The encounter"),
                  date_param("entered-date", Encounter.opened_at, "When the encounter opened")),
                 lambda line: [line.encounter.patient_id], _lines_base, EncounterLine.id, Encounter.patient_id,
                 doc="Visit charges: the coded lines of an encounter"),
    ResourceType("Claim", Claim, build_claim,
                 (id_param(Claim.id),
                  reference_param("patient", Appointment.patient_id, "Patient", "The patient"),
                  reference_param("provider", Appointment.provider_id, "Practitioner", "The clinician"),
                  date_param("created", Claim.created_at, "When the claim was made"),
                  token_param("status", Claim.status, CLAIM_STATUS, "Claim status")),
                 lambda c: [_appointment_of(c).patient_id], _claims_base, Claim.id, Appointment.patient_id,
                 doc="Insurance claims"),
    ResourceType("ExplanationOfBenefit", Remittance, build_eob,
                 (id_param(Remittance.id),
                  reference_param("patient", Appointment.patient_id, "Patient", "The patient"),
                  reference_param("claim", Remittance.claim_id, "Claim", "The claim"),
                  date_param("created", Remittance.received_at, "When the payer's answer arrived")),
                 lambda r: [_appointment_of(r.claim).patient_id], _eobs_base, Remittance.id, Appointment.patient_id,
                 doc="Payers' adjudications (remittances)"),
    ResourceType("AuditEvent", AuditEvent, build_audit_event,
                 (Param("_id", "token", "Logical id", id_param(AuditEvent.seq).apply),
                  Param("patient", "reference", "The patient an event is about", _audit_patient),
                  date_param("date", AuditEvent.occurred_at, "When the event happened"),
                  Param("action", "token", "The clinic's action code (subtype)", _audit_action)),
                 audit_event_patients, lambda: select(AuditEvent), AuditEvent.seq, doc="The audit trail"),
)
BY_NAME = {rt.name: rt for rt in REGISTRY}
# $everything: the patient compartment's types, in this order.
COMPARTMENT = ("Appointment", "Encounter", "Coverage", "ChargeItem", "Claim", "ExplanationOfBenefit")
CONTROL_PARAMS = ("_count", "_offset")


def get(session: Session, rt: ResourceType, id_: str, *, now: datetime):
    """One row by its logical id, or None."""
    if not ID.match(id_ or ""):
        return None
    if rt.read is not None:
        return rt.read(session, id_, now=now)
    if not id_.isdigit() or len(id_) > 18:
        return None
    pk = rt.order
    return session.scalars(rt.base().where(pk == int(id_))).unique().first()


@dataclass
class Page:
    rows: list
    total: int
    offset: int
    count: int


def search(session: Session, rt: ResourceType, args: dict[str, list[str]], *, now: datetime,
           count: int, offset: int) -> Page:
    for name in args:
        if rt.param(name) is None:
            raise SearchError(f"unknown search parameter {name[:40]!r} for {rt.name}")
    if rt.search is not None:
        found = rt.search(session, args=args, now=now)
        return Page(found[offset:offset + count], len(found), offset, count)
    query = rt.base()
    for name, values in args.items():
        query = rt.param(name).apply(query, values)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = list(session.scalars(query.order_by(rt.order).offset(offset).limit(count)).unique())
    return Page(rows, total or 0, offset, count)


def everything(session: Session, patient: Patient, *, allowed: Callable[[str], bool]) -> list[tuple[str, Any]]:
    """The patient and every resource in their compartment the caller may read."""
    out: list[tuple[str, Any]] = []
    if allowed("Patient"):
        out.append(("Patient", patient))
    for name in COMPARTMENT:
        rt = BY_NAME[name]
        if not allowed(name):
            continue
        query = rt.base().where(rt.compartment == patient.id).order_by(rt.order)
        out.extend((name, row) for row in session.scalars(query).unique())
    return out


# -- the CapabilityStatement -----------------------------------------------------------------------

def capability_statement(*, base_url: str, now: datetime, software_version: str = "1") -> dict:
    resources = []
    for rt in REGISTRY:
        entry = {"type": rt.name, "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "searchParam": [{"name": p.name, "type": p.type, "documentation": p.doc} for p in rt.params]}
        if rt.doc:
            entry["documentation"] = rt.doc
        if rt.name == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        resources.append(entry)
    return to_json({
        "resourceType": "CapabilityStatement", "status": "active", "date": _instant(now), "kind": "instance",
        "software": {"name": "Clinic Portal", "version": software_version},
        "implementation": {"description": "Clinic Portal FHIR API (read-only)", "url": base_url},
        "fhirVersion": FHIR_VERSION, "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                  "code": "SMART-on-FHIR"}]}],
                         "description": "OAuth2 client credentials at auth/token; SMART Backend Services "
                                        "scopes system/<Type>.read or system/*.read",
                         "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                        "extension": [{"url": "token", "valueUri": f"{base_url}/auth/token"}]}]},
            "resource": resources,
            "searchParam": [{"name": "_count", "type": "number", "documentation": "Page size"},
                            {"name": "_offset", "type": "number", "documentation": "Paging offset (from next links)"}],
            "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
        }],
    })
