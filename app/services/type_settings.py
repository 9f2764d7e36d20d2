"""An appointment type's insurance, intake and deposit settings (issue 15), as the admin edits them.

- expected codes: one per line, ``SYSTEM CODE [MODIFIER] [xUNITS]`` (``LOCAL LOC-FOLLOWUP``,
  ``CPT 99213 95``, ``HCPCS J1100 x4``); each must be a code the clinic has. Stored as
  ``[{system, code, modifier, units}]``; priced by the fee schedule for estimates and GFEs.
- questionnaire: one question per line, ``kind: label`` with kind ``text`` (the default), ``yesno`` or
  ``choice`` (``choice: How do you feel? = Better, The same, Worse``); `` (optional)`` at the end makes
  it optional. Keys are made from the label (kept when a label is unchanged), so "changed since last
  time" compares the same question.
- intake sections required, the deposit rule (estimate | copay | percent | fixed), its percent, fixed
  amount and cap.

``save`` raises ``TypeSettingsError`` (a StaffingError naming the form field) and audits
``appointment_type.intake_settings`` with the type id and what changed (no PHI: these are settings).
"""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AppointmentType, BillingCode
from app.services import audit
from app.services.audit import Actor
from app.services.staffing import StaffingError

SECTIONS = ("demographics", "reason", "questions", "insurance", "consents")
SECTION_LABELS = {"demographics": "About you", "reason": "Reason for the visit", "questions": "The questionnaire",
                  "insurance": "Insurance", "consents": "Consents"}
RULES = ("estimate", "copay", "percent", "fixed")
KINDS = ("text", "yesno", "choice")
MAX_LINES = 30
_MODIFIER = re.compile(r"^[A-Z0-9]{2}$")
_UNITS = re.compile(r"^[X×](\d{1,3})$")


class TypeSettingsError(StaffingError):
    pass


def codes_text(expected_codes) -> str:
    out = []
    for item in expected_codes or []:
        parts = [item.get("system", ""), item.get("code", "")]
        if item.get("modifier"):
            parts.append(item["modifier"])
        if int(item.get("units") or 1) > 1:
            parts.append(f"x{int(item['units'])}")
        out.append(" ".join(parts))
    return "\n".join(out)


def questions_text(questions) -> str:
    out = []
    for q in questions or []:
        kind = q.get("kind") or "text"
        line = f"{kind}: {q.get('label', '')}"
        if kind == "choice":
            line += " = " + ", ".join(q.get("choices") or [])
        if not q.get("required", True):
            line += " (optional)"
        out.append(line)
    return "\n".join(out)


def _lines(text: str, field: str) -> list[str]:
    lines = [ln.strip() for ln in (text or "").replace("\r", "").split("\n") if ln.strip()]
    if len(lines) > MAX_LINES:
        raise TypeSettingsError(f"At most {MAX_LINES} lines.", field)
    return lines


def parse_codes(session: Session, text: str) -> list[dict]:
    out = []
    known = {(s, c) for s, c in session.execute(select(BillingCode.system, BillingCode.code))}
    for number, line in enumerate(_lines(text, "expected_codes_text"), start=1):
        tokens = line.upper().replace(":", " ").split()
        if len(tokens) < 2 or len(tokens) > 4:
            raise TypeSettingsError(f"Line {number}: write the system and the code, like “LOCAL LOC-FOLLOWUP” "
                                    "or “CPT 99213 95 x2”.", "expected_codes_text")
        system, code, modifier, units = tokens[0], tokens[1], "", 1
        for token in tokens[2:]:
            found = _UNITS.match(token)
            if found:
                units = int(found.group(1))
            elif _MODIFIER.match(token) and not modifier:
                modifier = token
            else:
                raise TypeSettingsError(f"Line {number}: “{token[:20]}” is neither a two-character modifier "
                                        "nor a number of units like x2.", "expected_codes_text")
        if (system, code) not in known:
            raise TypeSettingsError(f"Line {number}: the clinic has no {system[:10]} code {code[:20]} "
                                    "(add it on the fee schedule first).", "expected_codes_text")
        if units < 1:
            raise TypeSettingsError(f"Line {number}: units must be 1 or more.", "expected_codes_text")
        out.append({"system": system, "code": code, "modifier": modifier, "units": units})
    return out


def _slug(label: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40].strip("_")
    return slug or "question"


def parse_questions(text: str, previous=None) -> list[dict]:
    by_label = {q.get("label"): q.get("key") for q in previous or [] if q.get("label") and q.get("key")}
    out, keys = [], set()
    for number, line in enumerate(_lines(text, "intake_questions_text"), start=1):
        kind, rest = "text", line
        head, sep, tail = line.partition(":")
        if sep and head.strip().lower() in KINDS:
            kind, rest = head.strip().lower(), tail.strip()
        required = True
        if rest.lower().endswith("(optional)"):
            required, rest = False, rest[: -len("(optional)")].strip()
        choices: list[str] = []
        if kind == "choice":
            label, sep, options = rest.partition("=")
            rest = label.strip()
            choices = [c.strip()[:80] for c in options.split(",") if c.strip()]
            if len(choices) < 2:
                raise TypeSettingsError(f"Line {number}: a choice question lists two or more answers after “=”, "
                                        "separated by commas.", "intake_questions_text")
        if not rest:
            raise TypeSettingsError(f"Line {number}: write the question.", "intake_questions_text")
        if len(rest) > 200:
            raise TypeSettingsError(f"Line {number}: a question is at most 200 characters.", "intake_questions_text")
        key = by_label.get(rest) or _slug(rest)
        base, n = key, 2
        while key in keys:
            key, n = f"{base}_{n}", n + 1
        keys.add(key)
        question = {"key": key, "label": rest, "kind": kind, "required": required}
        if choices:
            question["choices"] = choices
        out.append(question)
    return out


def save(session: Session, appointment_type: AppointmentType, *, actor: Actor, expected_codes_text: str,
         intake_questions_text: str, intake_required, deposit_rule: str, deposit_percent: int | None,
         deposit_fixed_cents: int | None, deposit_cap_cents: int | None) -> AppointmentType:
    codes = parse_codes(session, expected_codes_text)
    questions = parse_questions(intake_questions_text, appointment_type.intake_questions)
    required = [s for s in SECTIONS if s in set(intake_required or ())]
    if deposit_rule not in RULES:
        raise TypeSettingsError("Choose a deposit rule.", "deposit_rule")
    if deposit_rule == "percent" and deposit_percent is None:
        raise TypeSettingsError("Enter the percentage of the estimate to take as the deposit.", "deposit_percent")
    if deposit_percent is not None and not 0 <= deposit_percent <= 100:
        raise TypeSettingsError("Enter a percentage from 0 to 100.", "deposit_percent")
    if deposit_rule == "fixed" and deposit_fixed_cents is None:
        raise TypeSettingsError("Enter the fixed deposit amount.", "deposit_fixed")
    values = dict(expected_codes=codes, intake_questions=questions, intake_required=required,
                  deposit_rule=deposit_rule, deposit_percent=deposit_percent,
                  deposit_fixed_cents=deposit_fixed_cents, deposit_cap_cents=deposit_cap_cents)
    changed = {k: v for k, v in values.items() if getattr(appointment_type, k) != v}
    for name, value in values.items():
        setattr(appointment_type, name, value)
    session.flush()
    if changed:
        audit.record(session, actor=actor, action="appointment_type.intake_settings",
                     details={"type_id": appointment_type.id, "changed": sorted(changed)})
    return appointment_type


# -- the platform's fee on a type's visits (issue 16) ------------------------------------------------
#
# A percentage (stored in basis points: 12.5% -> 1250) and/or a fixed amount (cents). On a type both
# empty (NULL) means "the clinic's default" (ClinicSettings); app/services/payouts.py applies the rule
# when a visit's money becomes final. The parsers read what a person typed and raise ValueError with a
# message for them; ``save_platform_fee`` checks the bounds again (the database does too).

FEE_PERCENT_BP_MAX = 10_000                     # 100%
FEE_FIXED_CENTS_MAX = 99_999_999                # $999,999.99: the seven digits of dollars prices allow
_PERCENT = re.compile(r"^\d{1,3}(\.\d+)?$", re.ASCII)
_FEE_DOLLARS = re.compile(r"^\d{1,7}(\.\d+)?$", re.ASCII)


def parse_fee_percent(text: str | None) -> int | None:
    """'12.5' or '12.5%' -> 1250 (basis points); '' -> None. 0 to 100, at most two decimals."""
    cleaned = (text or "").strip().removesuffix("%").strip()
    if not cleaned:
        return None
    if cleaned.startswith("-"):
        raise ValueError("The percentage cannot be negative.")
    if not _PERCENT.match(cleaned):
        raise ValueError("Enter a percentage from 0 to 100, like 10 or 12.5.")
    whole, _, decimals = cleaned.partition(".")
    if len(decimals) > 2:
        raise ValueError("Use at most two decimals, like 12.25.")
    basis_points = int(whole) * 100 + int((decimals + "00")[:2])
    if basis_points > FEE_PERCENT_BP_MAX:
        raise ValueError("The percentage cannot be more than 100.")
    return basis_points


def parse_fee_fixed(text: str | None) -> int | None:
    """'2.50' or '$2.50' -> 250 (cents); '' -> None. Dollars and cents, not negative."""
    cleaned = (text or "").strip().replace("$", "").replace(",", "").strip()
    if not cleaned:
        return None
    if cleaned.startswith("-"):
        raise ValueError("The fixed amount cannot be negative.")
    if not _FEE_DOLLARS.match(cleaned):
        raise ValueError("Enter the fixed amount in dollars, like 2 or 2.50.")
    whole, _, decimals = cleaned.partition(".")
    if len(decimals) > 2:
        raise ValueError("Use at most two decimals (cents), like 2.50.")
    cents = int(whole) * 100 + int((decimals + "00")[:2])
    if cents > FEE_FIXED_CENTS_MAX:
        raise ValueError("The fixed amount cannot be more than $999,999.99.")
    return cents


def fee_percent_text(basis_points: int | None) -> str:
    """1250 -> '12.5'; 1000 -> '10'; None -> ''."""
    if basis_points is None:
        return ""
    whole, rest = divmod(basis_points, 100)
    return f"{whole}" if not rest else f"{whole}.{rest:02d}".rstrip("0")


def fee_words(percent_bp: int | None, fixed_cents: int | None) -> str:
    """'10% + $0.30', '10%', '$2.00', or 'no fee'."""
    parts = []
    if percent_bp:
        parts.append(f"{fee_percent_text(percent_bp)}%")
    if fixed_cents:
        parts.append(f"${fixed_cents // 100:,}.{fixed_cents % 100:02d}")
    return " + ".join(parts) or "no fee"


def check_fee(percent_bp: int | None, fixed_cents: int | None, *, percent_field: str, fixed_field: str) -> None:
    if percent_bp is not None and not 0 <= percent_bp <= FEE_PERCENT_BP_MAX:
        raise TypeSettingsError("Enter a percentage from 0 to 100.", percent_field)
    if fixed_cents is not None and not 0 <= fixed_cents <= FEE_FIXED_CENTS_MAX:
        raise TypeSettingsError("Enter a fixed amount from $0 to $999,999.99.", fixed_field)


def save_platform_fee(session: Session, appointment_type: AppointmentType, *, actor: Actor,
                      percent_bp: int | None, fixed_cents: int | None) -> AppointmentType:
    """The type's platform fee (both None: the clinic's default); audited
    ``appointment_type.platform_fee`` with the values before and after when they change."""
    check_fee(percent_bp, fixed_cents, percent_field="platform_fee_percent", fixed_field="platform_fee_fixed")
    before = {"percent_bp": appointment_type.platform_fee_percent_bp,
              "fixed_cents": appointment_type.platform_fee_fixed_cents}
    after = {"percent_bp": percent_bp, "fixed_cents": fixed_cents}
    if before == after:
        return appointment_type
    appointment_type.platform_fee_percent_bp = percent_bp
    appointment_type.platform_fee_fixed_cents = fixed_cents
    session.flush()
    audit.record(session, actor=actor, action="appointment_type.platform_fee",
                 details={"type_id": appointment_type.id, "from": before, "to": after})
    return appointment_type
