"""Codes: ICD-10-CM diagnoses (searched in process) and billing codes (the ``billing_codes`` table).

Diagnoses come from the ``simple-icd-10-cm`` package (the public CMS ICD-10-CM tabular list it
ships). ``search_diagnoses(query)`` answers billable codes (the leaves of the classification,
7th-character extensions included) by code prefix ("E11", "e11.6", "E116") or by the words of the
description ("type 2 diab", every word a prefix of a word of the description). The package parses
its XML when first imported (about 2 s), so the index is built once per process, lazily, on the
first search; then a search is a few milliseconds (an htmx type-ahead).

Billing codes carry their system: HCPCS (Level II, public CMS data; a small set is shipped and
seeded), LOCAL (the clinic's own codes, added on /admin/fees) and CPT (licensed by the AMA: never
shipped; a licensed clinic loads its file with ``flask codes import FILE.csv --system CPT``). CPT
descriptors are never written to logs or audit details: only counts and ids.
"""
from __future__ import annotations

import bisect
import csv
import io
import re
import threading
import warnings
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models.billing import SYSTEMS, BillingCode
from app.services import DomainError, audit
from app.services.audit import Actor

# -- diagnoses (ICD-10-CM) -----------------------------------------------------------------------

@dataclass(frozen=True)
class Diagnosis:
    code: str              # with its dot, as printed: "E11.9"
    description: str


_WORD = re.compile(r"[a-z0-9]+")
_CODE_QUERY = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z]?\.?[0-9A-Za-z]{0,4}$")
QUERY_MAX = 100


class _DiagnosisIndex:
    """Billable codes in classification order; a sorted list of dotless codes for prefix look-ups;
    an inverted index word -> positions, with the sorted vocabulary for word-prefix look-ups."""

    def __init__(self) -> None:
        with warnings.catch_warnings():        # 1.5.0 reads its data with importlib.resources' legacy API
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10_cm as cm

        self.entries: list[Diagnosis] = []
        postings: dict[str, list[int]] = {}
        for code in cm.get_all_codes(with_dots=True):
            if cm.is_chapter_or_block(code) or not cm.is_leaf(code):
                continue
            position = len(self.entries)
            self.entries.append(Diagnosis(code, cm.get_description(code)))
            for word in set(_WORD.findall(self.entries[-1].description.lower())):
                postings.setdefault(word, []).append(position)
        self.by_code = sorted((d.code.replace(".", ""), i) for i, d in enumerate(self.entries))
        self.codes = [c for c, _ in self.by_code]
        self.vocabulary = sorted(postings)
        self.postings = postings

    def by_prefix(self, prefix: str, limit: int) -> list[Diagnosis]:
        start = bisect.bisect_left(self.codes, prefix)
        found = []
        for code, position in self.by_code[start:start + limit]:
            if not code.startswith(prefix):
                break
            found.append(position)
        return [self.entries[p] for p in sorted(found)]

    def _word_positions(self, stem: str) -> set[int]:
        start = bisect.bisect_left(self.vocabulary, stem)
        positions: set[int] = set()
        for word in self.vocabulary[start:]:
            if not word.startswith(stem):
                break
            positions.update(self.postings[word])
        return positions

    def by_words(self, words: list[str], limit: int) -> list[Diagnosis]:
        # Rarest stem first, so the running intersection stays small.
        sets = sorted((self._word_positions(w) for w in words), key=len)
        found = sets[0]
        for other in sets[1:]:
            found = found & other
            if not found:
                return []
        # Shorter descriptions first (the general code before its many specific ones), then code order.
        ranked = sorted(found, key=lambda p: (len(self.entries[p].description), p))
        return [self.entries[p] for p in ranked[:limit]]


_index: _DiagnosisIndex | None = None
_index_lock = threading.Lock()


def _diagnosis_index() -> _DiagnosisIndex:
    global _index
    if _index is None:
        with _index_lock:
            if _index is None:
                _index = _DiagnosisIndex()
    return _index


def search_diagnoses(query: str, limit: int = 20) -> list[Diagnosis]:
    """Billable ICD-10-CM codes matching ``query``: a code prefix, else every word a word prefix."""
    text = (query or "").strip()[:QUERY_MAX]
    limit = max(1, min(limit, 100))
    if not text:
        return []
    index = _diagnosis_index()
    if _CODE_QUERY.match(text):
        found = index.by_prefix(text.upper().replace(".", ""), limit)
        if found:
            return found
    words = _WORD.findall(text.lower())
    return index.by_words(words, limit) if words else []


def diagnosis(code: str) -> Diagnosis | None:
    """One billable code ("E11.9" or "E119"), or None when it is not one."""
    wanted = (code or "").strip().upper().replace(".", "")[:8]
    index = _diagnosis_index()
    position = bisect.bisect_left(index.codes, wanted)
    if position < len(index.codes) and index.codes[position] == wanted:
        return index.entries[index.by_code[position][1]]
    return None


# -- billing codes -------------------------------------------------------------------------------

CODE_FORMAT = re.compile(r"^[A-Z0-9][A-Z0-9.-]{0,19}$")
DESCRIPTOR_MAX = 2000

# HCPCS Level II (public CMS data), long descriptors, for a small outpatient and telehealth clinic.
HCPCS_SHIPPED = [
    ("G0402", "Initial preventive physical examination; face-to-face visit, services limited to new "
              "beneficiary during the first 12 months of Medicare enrollment"),
    ("G0438", "Annual wellness visit; includes a personalized prevention plan of service (PPS), initial visit"),
    ("G0439", "Annual wellness visit, includes a personalized prevention plan of service (PPS), subsequent visit"),
    ("G0008", "Administration of influenza virus vaccine"),
    ("G0009", "Administration of pneumococcal vaccine"),
    ("G0010", "Administration of hepatitis B vaccine"),
    ("G0446", "Annual, face-to-face intensive behavioral therapy for cardiovascular disease, individual, 15 minutes"),
    ("G0447", "Face-to-face behavioral counseling for obesity, 15 minutes"),
    ("J0696", "Injection, ceftriaxone sodium, per 250 mg"),
    ("J1030", "Injection, methylprednisolone acetate, 40 mg"),
    ("J1100", "Injection, dexamethasone sodium phosphate, 1 mg"),
    ("J1885", "Injection, ketorolac tromethamine, per 15 mg"),
    ("J3301", "Injection, triamcinolone acetonide, not otherwise specified, 10 mg"),
    ("J3420", "Injection, vitamin B-12 cyanocobalamin, up to 1,000 mcg"),
    ("A4550", "Surgical trays"),
    ("A6402", "Gauze, non-impregnated, sterile, pad size 16 sq. in. or less, without adhesive border, "
              "each dressing"),
]
LOCAL_DEMO = [
    ("LOC-CONSULT", "Clinic consultation (local code)"),
    ("LOC-TELE", "Telehealth visit, clinic rate (local code)"),
    ("LOC-FOLLOWUP", "Follow-up visit, clinic rate (local code)"),
    ("LOC-FORMS", "Forms and letters completed for the patient (local code)"),
]


class CodeError(DomainError):
    """A code the clinic cannot add or use; the message is for the user."""


class ImportRefused(DomainError):
    """The file cannot be imported; nothing was changed. ``problems``: line-numbered messages (they
    never quote a descriptor)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems[:1]))
        self.problems = problems


@dataclass
class ImportResult:
    system_counts: dict[str, int] = field(default_factory=dict)
    added: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


def normalize_code(raw: str) -> str:
    return (raw or "").strip().upper()


def check_code(code: str) -> str:
    if not CODE_FORMAT.match(code):
        raise CodeError("A code is 1 to 20 letters, digits, dots or dashes, starting with a letter or digit.")
    return code


def check_descriptor(text: str) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise CodeError("Enter the code's description.")
    if len(text) > DESCRIPTOR_MAX:
        raise CodeError(f"A description is at most {DESCRIPTOR_MAX} characters.")
    return text


def seed_shipped(session: Session, actor: Actor) -> int:
    """Add the shipped HCPCS codes and the demo clinic's LOCAL codes that are missing; return how many."""
    existing = {(system, code) for system, code in session.execute(select(BillingCode.system, BillingCode.code))}
    added = [BillingCode(system=system, code=code, descriptor=descriptor, active=True)
             for system, rows in (("HCPCS", HCPCS_SHIPPED), ("LOCAL", LOCAL_DEMO))
             for code, descriptor in rows if (system, code) not in existing]
    if added:
        session.add_all(added)
        session.flush()
        audit.record(session, actor=actor, action="billing_codes.seeded", details={"added": len(added)})
    return len(added)


def get(session: Session, code_id: int) -> BillingCode | None:
    return session.get(BillingCode, code_id)


def find(session: Session, text: str) -> list[BillingCode]:
    """The codes written ``text``: "G0438", or "LOCAL:LOC-CONSULT" to name the system too."""
    system, _, code = normalize_code(text).rpartition(":")
    query = select(BillingCode).where(BillingCode.code == code)
    if system:
        query = query.where(BillingCode.system == system)
    return list(session.scalars(query.order_by(BillingCode.system)))


def list_codes(session: Session, *, query: str = "", limit: int = 200) -> list[BillingCode]:
    """Codes for the admin page, by system then code; ``query`` filters by code prefix or description."""
    statement = select(BillingCode).order_by(BillingCode.system, BillingCode.code).limit(limit)
    text = (query or "").strip()[:100]
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(or_(BillingCode.code.startswith(text.upper(), autoescape=True),
                                        BillingCode.descriptor.ilike(f"%{escaped}%", escape="\\")))
    return list(session.scalars(statement))


def count_codes(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(BillingCode)) or 0


def add_local(session: Session, *, code: str, descriptor: str, actor: Actor) -> BillingCode:
    """A new LOCAL code for the clinic (audited ``billing_code.added``)."""
    code = check_code(normalize_code(code))
    descriptor = check_descriptor(descriptor)
    if session.scalar(select(BillingCode.id).where(BillingCode.system == "LOCAL", BillingCode.code == code)):
        raise CodeError(f"The local code {code} already exists.")
    row = BillingCode(system="LOCAL", code=code, descriptor=descriptor, active=True)
    try:
        with session.begin_nested():             # the same code added a moment ago by another admin
            session.add(row)
    except IntegrityError:
        raise CodeError(f"The local code {code} already exists.") from None
    audit.record(session, actor=actor, action="billing_code.added",
                 details={"billing_code_id": row.id, "system": "LOCAL", "code": code})
    return row


# -- the import of a licensed clinic's code file ----------------------------------------------------

IMPORT_MAX_ROWS = 50_000
_PROBLEMS_SHOWN = 20


def parse_csv(data: bytes, *, system: str | None = None) -> list[tuple[str, str, str]]:
    """(system, code, descriptor) rows of a CSV with a header naming ``code``, ``descriptor`` and
    optionally ``system``; ``system`` is the system of rows that do not name one. Raises
    ImportRefused naming every problem found (by line, never quoting a descriptor)."""
    if system is not None and system not in SYSTEMS:
        raise ImportRefused([f"--system must be one of {', '.join(SYSTEMS)}."])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused(["The file is not UTF-8 text (save it as CSV UTF-8)."]) from None
    if "\x00" in text:
        raise ImportRefused(["The file contains NUL characters: it is not a CSV text file."])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise ImportRefused([f"line 1: not valid CSV ({error})."]) from None
    columns = [h.strip().lower() for h in header or []]
    if "code" not in columns or "descriptor" not in columns or len(set(columns)) != len(columns) \
            or not set(columns) <= {"code", "descriptor", "system"}:
        raise ImportRefused(["The first line must name the columns: code, descriptor and optionally system "
                             "(e.g. code,descriptor)."])
    if "system" not in columns and system is None:
        raise ImportRefused(["Say which system the codes belong to: --system CPT (or add a system column)."])
    at = {name: columns.index(name) for name in columns}
    rows, problems, seen = [], [], {}
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= IMPORT_MAX_ROWS:
                raise ImportRefused([f"The file has more than {IMPORT_MAX_ROWS} codes: split it."])
            if len(record) != len(columns):
                problems.append(f"line {line}: expected {len(columns)} columns, found {len(record)}.")
                continue
            row_system = record[at["system"]].strip().upper() if "system" in at and record[at["system"]].strip() \
                else system
            if row_system not in SYSTEMS:
                problems.append(f"line {line}: system must be one of {', '.join(SYSTEMS)}.")
                continue
            code = normalize_code(record[at["code"]])
            try:
                check_code(code)
            except CodeError:
                problems.append(f"line {line}: the code is not 1-20 letters, digits, dots or dashes.")
                continue
            try:
                descriptor = check_descriptor(record[at["descriptor"]])
            except CodeError:
                problems.append(f"line {line} ({code}): the descriptor is empty or longer than "
                                f"{DESCRIPTOR_MAX} characters.")
                continue
            if (row_system, code) in seen:
                problems.append(f"line {line}: {row_system} {code} is also on line {seen[(row_system, code)]}.")
                continue
            seen[(row_system, code)] = line
            rows.append((row_system, code, descriptor))
    except csv.Error as error:
        problems.append(f"line {reader.line_num}: not valid CSV ({error}).")
    if problems:
        shown = problems[:_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problems.")
        raise ImportRefused(shown)
    if not rows:
        raise ImportRefused(["The file has no codes."])
    return rows


def import_codes(session: Session, rows: list[tuple[str, str, str]], *, actor: Actor) -> ImportResult:
    """Upsert by (system, code): new codes added, a changed descriptor updated, every imported code
    active. Audited once (``billing_codes.imported``: counts per system, no descriptors)."""
    result = ImportResult()
    existing = {(c.system, c.code): c for c in session.scalars(
        select(BillingCode).where(BillingCode.system.in_({system for system, _, _ in rows})))}
    for system, code, descriptor in rows:
        result.system_counts[system] = result.system_counts.get(system, 0) + 1
        row = existing.get((system, code))
        if row is None:
            session.add(BillingCode(system=system, code=code, descriptor=descriptor, active=True))
            result.added += 1
        elif row.descriptor != descriptor or not row.active:
            row.descriptor, row.active = descriptor, True
            result.updated += 1
        else:
            result.unchanged += 1
    session.flush()
    audit.record(session, actor=actor, action="billing_codes.imported",
                 details={"systems": result.system_counts, "added": result.added,
                          "updated": result.updated, "unchanged": result.unchanged})
    return result
