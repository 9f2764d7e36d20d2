"""The fee schedule: a price per billing code and modifier, in force from a date.

- ``price_for(session, code_id, modifier, on_date)`` is what a visit on ``on_date`` costs: among the
  rows with ``effective_from <= on_date``, the latest for that modifier; when the code has no price
  for the modifier at that date, the latest of its plain ('' modifier) price; None when neither.
  Encounter signing (issue 14, later) copies this onto the billing line, so a price set afterwards
  never changes a signed visit.
- ``set_price`` adds the row (a new price for the same code, modifier and date replaces that row's
  price); audited ``fee.price_set`` with the previous price of that date, if any.
- ``schedule(session, on_date)`` is the admin page: each code with the prices in force and the
  changes to come.

Money is integer cents; dates are the clinic's calendar dates (``clinic_today``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models.billing import PRICE_MAX_CENTS, BillingCode, FeeScheduleEntry
from app.services import DomainError, audit, codes
from app.services.audit import Actor

MODIFIER = re.compile(r"^([A-Z0-9]{2})?$")


class PriceError(DomainError):
    """A price that cannot be set; the message is for the user."""


@dataclass(frozen=True)
class Price:
    modifier: str
    price_cents: int
    effective_from: date


@dataclass
class ScheduleRow:
    code: BillingCode
    current: list[Price] = field(default_factory=list)     # in force on the date, '' first
    upcoming: list[Price] = field(default_factory=list)    # effective after the date, soonest first

    @property
    def base(self) -> Price | None:
        return next((p for p in self.current if p.modifier == ""), None)


def normalize_modifier(raw: str | None) -> str:
    modifier = (raw or "").strip().upper()
    if not MODIFIER.match(modifier):
        raise PriceError("A modifier is two letters or digits (like 95 or GT), or empty for none.")
    return modifier


def clinic_today(session: Session, now: datetime) -> date:
    """Today's date at the clinic (its timezone), for 'in force now'."""
    from app.services.clinic import current_clinic

    return now.astimezone(ZoneInfo(current_clinic(session).timezone or "UTC")).date()


def price_for(session: Session, code_id: int, modifier: str, on_date: date) -> int | None:
    """The price in cents of ``code_id`` with ``modifier`` for a service on ``on_date``, or None."""
    modifier = normalize_modifier(modifier)
    wanted = {modifier, ""}
    row = session.execute(
        select(FeeScheduleEntry.price_cents)
        .where(FeeScheduleEntry.billing_code_id == code_id, FeeScheduleEntry.modifier.in_(wanted),
               FeeScheduleEntry.effective_from <= on_date)
        .order_by(case((FeeScheduleEntry.modifier == modifier, 0), else_=1),
                  FeeScheduleEntry.effective_from.desc())
        .limit(1)).first()
    return row[0] if row else None


def set_price(session: Session, *, code_id: int, modifier: str, price_cents: int, effective_from: date,
              actor: Actor) -> FeeScheduleEntry:
    """The code's price (with ``modifier``) from ``effective_from`` on; audited ``fee.price_set``."""
    code = session.get(BillingCode, code_id)
    if code is None:
        raise PriceError("That code does not exist.")
    modifier = normalize_modifier(modifier)
    if not isinstance(price_cents, int) or isinstance(price_cents, bool) or not 0 < price_cents <= PRICE_MAX_CENTS:
        raise PriceError("The price must be more than $0.00 and at most $9,999,999.99.")
    row = session.scalar(select(FeeScheduleEntry).where(
        FeeScheduleEntry.billing_code_id == code.id, FeeScheduleEntry.modifier == modifier,
        FeeScheduleEntry.effective_from == effective_from).with_for_update())
    previous = row.price_cents if row is not None else None
    if row is None:
        row = FeeScheduleEntry(billing_code_id=code.id, modifier=modifier, effective_from=effective_from,
                               price_cents=price_cents, created_by=actor.id if actor.type == "user" else None)
        try:
            with session.begin_nested():         # another admin's row for the same date, just committed
                session.add(row)
        except IntegrityError:
            raise PriceError("A price for this code, modifier and date was set a moment ago: "
                             "reload the page to see it.") from None
    else:
        row.price_cents = price_cents
        row.created_by = actor.id if actor.type == "user" else None
        session.flush()
    audit.record(session, actor=actor, action="fee.price_set",
                 details={"billing_code_id": code.id, "system": code.system, "code": code.code,
                          "modifier": modifier, "price_cents": price_cents,
                          "effective_from": effective_from.isoformat(), "previous_cents": previous})
    return row


def schedule(session: Session, on_date: date, *, query: str = "", limit: int = 200) -> list[ScheduleRow]:
    """The codes (filtered by ``query``, at most ``limit``) with the prices in force on ``on_date``
    (one per modifier: the latest that began on or before it) and the later changes."""
    listed = codes.list_codes(session, query=query, limit=limit)
    rows = {code.id: ScheduleRow(code=code) for code in listed}
    if not rows:
        return []
    entries = session.scalars(select(FeeScheduleEntry)
                              .where(FeeScheduleEntry.billing_code_id.in_(rows))
                              .order_by(FeeScheduleEntry.billing_code_id, FeeScheduleEntry.modifier,
                                        FeeScheduleEntry.effective_from))
    for entry in entries:
        row, price = rows[entry.billing_code_id], Price(entry.modifier, entry.price_cents, entry.effective_from)
        if entry.effective_from > on_date:
            row.upcoming.append(price)
        else:                                    # ascending: a later row in force replaces the earlier
            row.current = [p for p in row.current if p.modifier != entry.modifier] + [price]
    for row in rows.values():
        row.current.sort(key=lambda p: p.modifier)
        row.upcoming.sort(key=lambda p: (p.effective_from, p.modifier))
    return list(rows.values())


def seed_demo_prices(session: Session, actor: Actor, effective_from: date) -> int:
    """Prices for the demo clinic's LOCAL codes and a few HCPCS codes, when the code has none yet."""
    demo = {("LOCAL", "LOC-CONSULT"): 15000, ("LOCAL", "LOC-TELE"): 9500, ("LOCAL", "LOC-FOLLOWUP"): 7500,
            ("LOCAL", "LOC-FORMS"): 2500, ("HCPCS", "G0438"): 17500, ("HCPCS", "G0439"): 12500,
            ("HCPCS", "J1100"): 500, ("HCPCS", "J3420"): 1500}
    added = 0
    for code in session.scalars(select(BillingCode).where(BillingCode.code.in_({c for _, c in demo}))):
        cents = demo.get((code.system, code.code))
        if cents is None or session.scalar(select(FeeScheduleEntry.id).where(
                FeeScheduleEntry.billing_code_id == code.id).limit(1)):
            continue
        set_price(session, code_id=code.id, modifier="", price_cents=cents, effective_from=effective_from,
                  actor=actor)
        added += 1
    return added
