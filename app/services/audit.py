"""The audit core: one function every state change calls, in its transaction.

``record()`` only collects the row on the session. Just before the commit
(``before_commit``) the collected rows are written together, in the change's own
transaction, each with an id from a sequence (``seq``) and its own HMAC over its
content (key ``AUDIT_HMAC_KEY``). No lock is taken and the chain is not read: audited
writes commit in parallel. The database refuses UPDATE, DELETE and TRUNCATE on
the table (triggers in the migrations).

The chain is appended afterwards, off the commit path: ``link_pending()`` (the
sequencer, run by the worker's sweep and ``app.jobs.audit.link``) takes its own
advisory lock, finds committed rows that have no link yet by an anti-join
(never by an id high-water mark: in PostgreSQL id order is not commit order),
checks each row's HMAC and appends links to ``audit_links``: gap-free positions,
each ``HMAC(key, prev_hash : row HMAC : position)``. ``verify()`` walks the links,
then checks every row not yet linked by its own HMAC and reports the lag.

Rows cut from the end leave a shorter chain that is intact in itself, so the head is
also kept outside the database: ``anchor()`` appends it (position, hash, time) as one
JSON line to an append-only file (AUDIT_ANCHOR_PATH) and to the log; the linking jobs
call ``anchor_if_due()`` after linking, and ``check_anchors()`` (run by ``flask audit
verify``) says how many rows are missing after the last linked position, or where the
chain no longer matches an anchored hash.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Text, event, func, insert, select, text, type_coerce
from sqlalchemy.orm import Session, scoped_session

from app.models.audit import SEQ_SEQUENCE, AuditEvent, AuditLink
from app.models.types import EncryptedText
from app.services import field_crypto

log = logging.getLogger("app.audit")
GENESIS = "0" * 64
LINK_LOCK_KEY = 0x4155_4449_544C  # "AUDITL": taken by the sequencer only, never by a request
_PENDING = "audit_pending"
_CONTEXT = "audit_context"


@dataclass(frozen=True)
class Actor:
    type: str                     # user | system | job | webhook
    id: int | None = None
    role: str | None = None

    @classmethod
    def of(cls, user) -> "Actor":
        if user is None or not getattr(user, "is_authenticated", False):
            return cls("anonymous")
        return cls("user", user.id, user.role)

    @classmethod
    def system(cls, kind: str = "system") -> "Actor":
        return cls(kind)


_process_key: str | None = None


def use_key(key: str) -> None:
    """Set the HMAC key for this process (create_app does it from settings)."""
    global _process_key
    _process_key = key


def set_context(session: Session, *, request_id: str | None, ip: str | None) -> None:
    """Request id and address for rows recorded in this unit of work (set by the web edge)."""
    session.info[_CONTEXT] = {"request_id": request_id, "ip": ip}


def record(session: Session, *, actor: Actor, action: str, outcome: str = "success",
           reason: str | None = None, patient_id: int | None = None,
           appointment_id: int | None = None, payment_attempt_id: int | None = None,
           stripe_object_id: str | None = None, encounter_id: int | None = None,
           subject_user_id: int | None = None, authorized_by: int | None = None,
           details: dict | None = None, at: datetime | None = None) -> None:
    """Collect one audit row; it is written with the transaction's commit."""
    context = session.info.get(_CONTEXT) or {}
    session.connection()   # begin the transaction now, so its rollback drops the row too
    session.info.setdefault(_PENDING, []).append(dict(
        occurred_at=(at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        actor_type=actor.type, actor_id=actor.id, actor_role=actor.role,
        action=action, patient_id=patient_id, appointment_id=appointment_id,
        payment_attempt_id=payment_attempt_id, stripe_object_id=stripe_object_id,
        encounter_id=encounter_id, subject_user_id=subject_user_id, outcome=outcome,
        reason=reason, authorized_by=authorized_by,
        request_id=context.get("request_id"), ip=context.get("ip"),
        details=details or {},
    ))


def _canonical(row: dict[str, Any]) -> bytes:
    values = {}
    for name in AuditEvent.HASHED:
        value = row.get(name)
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        values[name] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(key: str, row: dict[str, Any]) -> str:
    return hmac.new(key.encode(), _canonical(row), hashlib.sha256).hexdigest()


def link_hash(key: str, prev_hash: str, row_hmac: str, position: int) -> str:
    """A link's hash: HMAC(key, prev_hash : row HMAC : position)."""
    return hmac.new(key.encode(), f"{prev_hash}:{row_hmac}:{position}".encode(), hashlib.sha256).hexdigest()


def _key(session: Session, key: str | None = None) -> str:
    key = key or _process_key
    if not key:
        raise RuntimeError("audit: the session has no HMAC key (create_app configures it)")
    return key


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    key = _key(session)
    conn = session.connection()
    # Ids first (one round trip), so each row's HMAC covers its own seq. No lock, no chain read.
    seqs = sorted(conn.execute(text(f"SELECT nextval('{SEQ_SEQUENCE}') FROM generate_series(1, :n)"),
                               {"n": len(pending)}).scalars())
    rows = []
    for seq, row in zip(seqs, pending):
        row = dict(row, seq=seq, prev_hash=None)
        row["hash"] = compute_hash(key, row)       # over the plaintext: ``reason`` is encrypted by the
        rows.append(row)                           # column's type (EncryptedText) as it is inserted
    conn.execute(insert(AuditEvent.__table__), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


# -- the sequencer: links committed rows, off the commit path ------------------------------------

_events = AuditEvent.__table__
_links = AuditLink.__table__
# The encrypted columns (``reason``) are read as stored and decrypted row by row (``_plain``), so a
# row whose ciphertext was altered is reported as broken instead of failing the whole batch.
_ENCRYPTED = {c.name: c.type.context for c in _events.c if isinstance(c.type, EncryptedText)}
_stored_events = [type_coerce(c, Text).label(c.name) if c.name in _ENCRYPTED else c for c in _events.c]


def _plain(row) -> dict | None:
    """The row with its encrypted columns decrypted (its HMAC is over the plaintext, whatever key
    encrypted it); None when one of them does not decrypt (altered, or its key is gone)."""
    row = dict(row)
    for name, context in _ENCRYPTED.items():
        if row.get(name) is not None:
            try:
                row[name] = field_crypto.decrypt(row[name], context=context)
            except field_crypto.DecryptionError:
                return None
    return row


UNDECRYPTABLE = "its encrypted reason does not decrypt (altered, or its key was removed from FIELD_KEYS)"


def _mismatch(key: str, row) -> str | None:
    """Why the row does not match its own HMAC, or None when it does."""
    plain = _plain(row)
    if plain is None:
        return UNDECRYPTABLE
    if not hmac.compare_digest(compute_hash(key, plain), row["hash"] or ""):
        return "content does not match its hash"
    return None


def _unlinked():
    """Rows with no link yet: an anti-join (LEFT JOIN audit_links ... IS NULL), in seq order."""
    return (select(*_stored_events).select_from(_events.outerjoin(_links, _links.c.event_seq == _events.c.seq))
            .where(_links.c.event_seq.is_(None)).order_by(_events.c.seq))


def _last_link(conn):
    return conn.execute(select(_links.c.position, _links.c.hash, _links.c.event_seq)
                        .order_by(_links.c.position.desc()).limit(1)).first()


@dataclass(frozen=True)
class Linked:
    linked: int          # links appended
    refused: int         # rows whose own HMAC did not match (never linked; verify reports them)
    seen: int            # unlinked rows read (linked + refused)


def link_pending(session: Session, *, limit: int = 500, key: str | None = None) -> Linked:
    """Append links for up to ``limit`` committed, unlinked rows, in seq order; commit.

    Only the sequencer takes LINK_LOCK_KEY (a transaction-scoped advisory lock), so
    positions are gap-free and each link names the previous one. The anti-join runs
    after the lock is held, at READ COMMITTED: it sees only committed rows, so an
    uncommitted row is never linked, and a row that commits later with a lower seq
    than rows already linked is found by the next run. A row whose own HMAC does
    not match (altered, or inserted without the key) is not linked: it is logged,
    and ``verify()`` reports it.
    """
    key = _key(session, key)
    conn = session.connection()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINK_LOCK_KEY})
    last = _last_link(conn)
    position, prev = (last.position, last.hash) if last else (0, GENESIS)
    rows = conn.execute(_unlinked().limit(limit)).mappings().all()
    links, refused = [], 0
    for row in rows:
        if _mismatch(key, row):
            refused += 1
            log.error("audit: row seq=%s does not match its HMAC; not linked", row["seq"])
            continue
        position += 1
        link = link_hash(key, prev, row["hash"], position)
        links.append({"position": position, "event_seq": row["seq"], "prev_hash": prev, "hash": link})
        prev = link
    if links:
        conn.execute(insert(_links), links)
    session.commit()
    return Linked(len(links), refused, len(rows))


def link_all(session: Session, *, limit: int = 500, key: str | None = None) -> int:
    """Run the sequencer in batches of ``limit`` until nothing committed is left unlinked."""
    total = 0
    while True:
        batch = link_pending(session, limit=limit, key=key)
        total += batch.linked
        if batch.seen < limit or batch.linked == 0:
            return total


@dataclass(frozen=True)
class Lag:
    unlinked: int
    oldest_seq: int | None = None
    oldest_age: float | None = None     # seconds since the oldest unlinked row occurred

    def __str__(self) -> str:
        if not self.unlinked:
            return "0 rows not yet linked"
        return (f"{self.unlinked} rows not yet linked, the oldest seq {self.oldest_seq} "
                f"{self.oldest_age:.1f}s old")


def lag(session: Session) -> Lag:
    """How far the chain is behind: committed rows with no link yet, and the oldest one's age."""
    sub = _unlinked().subquery()
    count, oldest_at, oldest_seq = session.execute(
        select(func.count(), func.min(sub.c.occurred_at), func.min(sub.c.seq))).one()
    if not count:
        return Lag(0)
    age = max(0.0, (datetime.now(timezone.utc) - oldest_at).total_seconds())
    return Lag(count, oldest_seq, age)


# -- verification -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    head_position: int | None = None
    head_hash: str | None = None
    linked: int = 0
    lag: Lag = Lag(0)

    def __str__(self) -> str:
        if self.ok:
            head = (f"head position {self.head_position} {self.head_hash}" if self.head_position
                    else "no links yet")
            return (f"audit chain intact: {self.checked} rows ({self.linked} linked, {head}; "
                    f"{self.lag}, each matching its own HMAC)")
        return (f"audit chain BROKEN at seq {self.broken_seq}: {self.problem} "
                f"({self.checked} rows checked before it; {self.lag})")


def verify(session: Session, *, key: str, batch: int = 5000) -> Verification:
    """Walk the links in position order (each link's hash, its row's HMAC, no gap), then check
    every row not yet linked by its own HMAC; report the first break, and the lag."""
    if isinstance(session, scoped_session):
        session = session()
    if session.in_transaction():
        return _verify(session, key, batch)
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})   # one snapshot
    try:
        return _verify(session, key, batch)
    finally:
        session.rollback()          # read only; and the next verify sees a fresh snapshot


def _verify(session: Session, key: str, batch: int) -> Verification:
    prev, position, checked = GENESIS, 0, 0
    columns = [_links.c.position, _links.c.event_seq.label("link_seq"), _links.c.prev_hash.label("link_prev"),
               _links.c.hash.label("link_hash"), *_stored_events]
    while True:
        rows = session.execute(
            select(*columns).select_from(_links.outerjoin(_events, _events.c.seq == _links.c.event_seq))
            .where(_links.c.position > position).order_by(_links.c.position).limit(batch)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            seq = row["link_seq"]
            if row["position"] != position + 1:
                return _broken(session, checked, seq, f"link {position + 1} is missing "
                                                      f"(next link is {row['position']})")
            if row["seq"] is None:
                return _broken(session, checked, seq, f"row {seq} is missing (linked at position "
                                                      f"{row['position']})")
            if row["link_prev"] != prev:
                return _broken(session, checked, seq, f"link {row['position']} does not name the previous "
                                                      "link's hash")
            problem = _mismatch(key, row)
            if problem:
                return _broken(session, checked, seq, problem)
            if not hmac.compare_digest(link_hash(key, prev, row["hash"], row["position"]), row["link_hash"]):
                return _broken(session, checked, seq, f"link {row['position']} does not match its hash")
            prev, position, checked = row["link_hash"], row["position"], checked + 1
    linked, last_seq = checked, 0
    while True:
        rows = session.execute(_unlinked().where(_events.c.seq > last_seq).limit(batch)).mappings().all()
        if not rows:
            break
        for row in rows:
            problem = _mismatch(key, row)
            if problem:
                return _broken(session, checked, row["seq"], f"{problem} (not yet linked)")
            checked, last_seq = checked + 1, row["seq"]
    return Verification(True, checked, head_position=position or None, head_hash=prev if position else None,
                        linked=linked, lag=lag(session))


def _broken(session: Session, checked: int, seq: int | None, problem: str) -> Verification:
    return Verification(False, checked, seq, problem, lag=lag(session))


def head(session: Session) -> tuple[int, str] | None:
    """The chain head: the last link's (position, hash)."""
    row = _last_link(session.connection())
    return (row.position, row.hash) if row else None


# -- anchors: the chain head, kept outside the database ------------------------------------------

@dataclass(frozen=True)
class Anchor:
    position: int
    hash: str
    at: datetime
    line: int = 0           # its line in the anchor file (1-based), 0 when just written

    def as_line(self) -> str:
        return json.dumps({"position": self.position, "hash": self.hash,
                           "at": self.at.astimezone(timezone.utc).isoformat(timespec="seconds")},
                          sort_keys=True, separators=(",", ":")) + "\n"


class AnchorFileError(Exception):
    """The anchor file cannot be read, or a line of it is not an anchor."""


def anchor(session: Session, path: Path | str | None = None, *, now: datetime | None = None
           ) -> tuple[int, str] | None:
    """Write the chain head (the last link) outside the database: to the application log
    (position and hash, nothing else), and, given ``path``, appended as one JSON line to that
    append-only file (``O_APPEND``, one ``write``, fsynced). Holds the sequencer's lock until the
    caller ends the transaction, so anchors from two workers are appended in chain order.
    Returns (position, hash), or None before the first link."""
    conn = session.connection()
    if path is not None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINK_LOCK_KEY})
    row = _last_link(conn)
    if row is None:
        return None
    if path is not None:
        _append(Path(path), Anchor(row.position, row.hash, now or datetime.now(timezone.utc)))
    log.info("audit anchor position=%s hash=%s seq=%s", row.position, row.hash, row.event_seq)
    return row.position, row.hash


def anchor_if_due(session: Session, path: Path | str, *, interval: timedelta, rows: int,
                  now: datetime | None = None) -> tuple[int, str] | None:
    """The linking jobs' anchor step (after linking): anchor when the head moved past the file's
    latest anchor and either ``interval`` has passed since it or ``rows`` links were added; with
    no (readable) anchor yet, now. Returns the anchored head, or None when nothing was written."""
    now = now or datetime.now(timezone.utc)
    head_row = _last_link(session.connection())
    if head_row is None:
        return None
    try:
        last = latest_anchor_line(Path(path))
    except AnchorFileError as error:
        log.error("audit anchor file unreadable (%s); writing a new anchor", error)
        last = None
    if last is not None:
        if head_row.position <= last.position:
            return None
        if now - last.at < interval and head_row.position - last.position < rows:
            return None
    return anchor(session, path, now=now)


def _append(path: Path, entry: Anchor) -> None:
    data = entry.as_line().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        if os.write(fd, data) != len(data):       # one short line: a local file takes it whole
            raise OSError(f"short write to the audit anchor file {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_anchor(raw: str, number: int) -> Anchor:
    try:
        value = json.loads(raw)
        position, digest, at = value["position"], value["hash"], value["at"]
        if not isinstance(position, int) or isinstance(position, bool) or position < 1:
            raise ValueError("position is not a positive integer")
        if not isinstance(digest, str) or len(digest) != 64 or set(digest) - set("0123456789abcdef"):
            raise ValueError("hash is not 64 hex digits")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("time has no offset")
    except (ValueError, KeyError, TypeError) as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else str(error) or type(error).__name__
        raise AnchorFileError(f"line {number} is not an anchor ({reason[:120]})") from None
    return Anchor(position, digest, when, number)


def read_anchors(path: Path | str) -> list[Anchor]:
    """Every anchor in the file, in file order; [] when there is no file yet. Raises
    AnchorFileError naming the first line that is not an anchor, or why the file cannot be read."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8", errors="strict") as handle:
            return [_parse_anchor(raw, number) for number, raw in enumerate(handle, start=1) if raw.strip()]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise AnchorFileError(f"cannot read {path}: {type(error).__name__}: {error}") from None


def latest_anchor_line(path: Path) -> Anchor | None:
    """The file's last anchor, reading only its tail."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            chunk, tail = 4096, b""
            while size > 0:
                step = min(chunk, size)
                size -= step
                handle.seek(size)
                tail = handle.read(step) + tail
                if tail.rstrip(b"\n").count(b"\n") >= 1:
                    break
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AnchorFileError(f"cannot read {path}: {error}") from None
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return None
    try:
        return _parse_anchor(lines[-1].decode("utf-8"), 0)
    except UnicodeDecodeError:
        raise AnchorFileError("its last line is not an anchor (not UTF-8)") from None


@dataclass(frozen=True)
class AnchorCheck:
    ok: bool
    message: str
    missing: int = 0


def check_anchors(session: Session, path: Path | str) -> AnchorCheck:
    """Compare the chain with the anchors written outside the database: the chain must reach the
    highest anchored position, and its link at every anchored position must have the anchored
    hash. Read only."""
    path = Path(path)
    try:
        anchors = read_anchors(path)
    except AnchorFileError as error:
        return AnchorCheck(False, f"audit anchor file {path}: {error}")
    if not anchors:
        return AnchorCheck(True, f"no audit anchor in {path} yet: rows cut from the end of the chain "
                                 "cannot be detected until the first one is written")
    latest = max(anchors, key=lambda a: (a.position, a.line))
    last = session.scalar(select(func.max(_links.c.position))) or 0
    if last < latest.position:
        missing = latest.position - last
        return AnchorCheck(False, f"audit chain is missing {missing} rows after position {last} "
                                  f"(anchor of {_when(latest)} names position {latest.position}, "
                                  f"{path} line {latest.line})", missing)
    wanted = sorted({a.position for a in anchors})
    hashes: dict[int, str] = {}
    for start in range(0, len(wanted), 10000):
        part = wanted[start:start + 10000]
        hashes.update((position, digest) for position, digest in session.execute(
            select(_links.c.position, _links.c.hash).where(_links.c.position.in_(part))))
    for entry in sorted(anchors, key=lambda a: (a.position, a.line)):
        if hashes.get(entry.position) != entry.hash:
            return AnchorCheck(False, f"audit chain differs from the anchor of {_when(entry)} at position "
                                      f"{entry.position} ({path} line {entry.line}): the links up to it "
                                      "were rewritten")
    return AnchorCheck(True, f"audit chain matches {len(anchors)} anchors; the latest, of {_when(latest)}, "
                             f"at position {latest.position} ({last - latest.position} links since)")


def _when(entry: Anchor) -> str:
    return entry.at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def actions_for(session: Session, **filters) -> list[str]:
    query = select(AuditEvent.action).order_by(AuditEvent.seq)
    for name, value in filters.items():
        query = query.where(getattr(AuditEvent, name) == value)
    return list(session.scalars(query))
