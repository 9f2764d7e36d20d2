"""The patient's itemized statement of a post-visit visit: the signed billing lines (code system,
code, modifier, descriptor, units, unit price, amount), the total, what was paid (and with which
card), refunded, the balance due, and where the charge stands, in plain words.

Everything comes from what was signed and what was captured: the lines' prices are the ones copied
onto them at signing (never recomputed from today's fee schedule), paid is the visit charge's
captured amount, and each payment is a captured PaymentAttempt with the card stored on it (a
statement never calls Stripe). A statement carries no diagnosis and no note text: only billing
codes and their descriptors.

``statement_pdf`` lays the same statement out as a PDF (fpdf2, core fonts only: no font files
shipped), with dates in the clinic's timezone. Nothing here commits or imports Flask.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import Appointment, Charge, CollectionCase, Encounter, EncounterLine, PaymentAttempt, Refund
from app.services.locale_format import current_language, format_local, format_money

# The case's status as the patient reads it.
# Lazy (issue 17): each is translated where it is shown, into the page's (or the PDF's) language.
PATIENT_LABELS = {
    "pending": _l("Payment in progress"),
    "charging": _l("Payment in progress"),
    "paid": _l("Paid in full"),
    "recovering": _l("Payment needed: your card could not be charged"),
    "collections": _l("Overdue"),
    "with_agency": _l("Overdue: referred to a collections agency"),
    "payment_plan": _l("Payment plan"),
    "written_off": _l("No balance due"),
}


def money(cents: int | None) -> str:
    """$1,234.50 (a minus sign before the dollar sign for a negative amount)."""
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _money(cents: int | None) -> str:
    """``money`` in the current language (the PDF's)."""
    return "" if cents is None else format_money(cents, current_language())


@dataclass(frozen=True)
class StatementLine:
    position: int
    code_system: str
    code: str
    modifier: str
    descriptor: str
    units: int
    unit_price_cents: int
    amount_cents: int


@dataclass(frozen=True)
class StatementPayment:
    at: datetime | None
    amount_cents: int
    card_brand: str | None
    card_last4: str | None

    @property
    def card(self) -> str:
        if not self.card_last4:
            return _("Card")
        return _("%(brand)s ending in %(last4)s", brand=(self.card_brand or "card").title(), last4=self.card_last4)


@dataclass(frozen=True)
class Statement:
    appointment_id: int
    encounter_id: int
    patient_id: int
    service_at: datetime                      # the appointment's start (the date of service)
    signed_at: datetime
    visit_name: str
    provider_name: str
    lines: list[StatementLine]
    total_cents: int
    paid_cents: int
    refunded_cents: int
    balance_cents: int
    written_off_cents: int
    payments: list[StatementPayment] = field(default_factory=list)
    status: str = "none"                      # the case's status, or "none" when no visit charge exists
    status_label: str = ""
    # A hybrid visit (issue 15): billed, what insurance paid, the adjustments in words, the patient's
    # share, the deposit, and the balance charged or the refund (app/services/claims.hybrid_summary).
    hybrid: object | None = None

    @property
    def can_pay(self) -> bool:
        """A balance the patient may pay now (not while the card on file is being charged)."""
        return self.balance_cents > 0 and self.status not in ("pending", "charging")

    @property
    def hybrid_rows(self) -> list[tuple[str, str]]:
        return hybrid_rows(self.hybrid) if self.hybrid is not None else []

    @property
    def net_paid_cents(self) -> int:
        return self.paid_cents - self.refunded_cents

    def text(self) -> str:
        """Everything the statement says, as plain text (what the page and the PDF show)."""
        out = [f"Statement for appointment #{self.appointment_id}", self.visit_name, self.provider_name]
        for line in self.lines:
            out.append(" ".join(filter(None, [line.code_system, line.code, line.modifier, line.descriptor,
                                              str(line.units), money(line.unit_price_cents),
                                              money(line.amount_cents)])))
        out += [f"Total {money(self.total_cents)}", f"Paid {money(self.paid_cents)}",
                f"Refunded {money(self.refunded_cents)}", f"Balance due {money(self.balance_cents)}",
                str(self.status_label)]
        out += [f"{p.card} {money(p.amount_cents)}" for p in self.payments]
        if self.hybrid is not None:
            out += [f"{label} {value}" for label, value in hybrid_rows(self.hybrid)]
            if self.hybrid.explanation:
                out.append(self.hybrid.explanation)
        return "\n".join(out)


def hybrid_rows(summary) -> list[tuple[str, str]]:
    """The insurer's part of a hybrid statement, as (label, amount) rows (the page and the PDF)."""
    rows = [(_("Billed to your insurance") if not summary.self_pay else _("Visit price"), money(summary.billed_cents))]
    if not summary.self_pay:
        rows.append((_("Paid by your insurance"), money(summary.insurance_paid_cents) if not summary.waiting
                     else _("waiting for your insurer")))
        rows += [(f"{a.words[:1].upper()}{a.words[1:]} ({a.label.split(' ')[0]})", money(a.amount_cents))
                 for a in summary.adjustments]
    rows.append((_("Your share"), money(summary.your_share_cents) if summary.your_share_cents is not None
                 else _("waiting for your insurer")))
    rows.append((_("Deposit paid"), money(summary.deposit_captured_cents)))
    if summary.balance_charged_cents:
        rows.append((_("Balance charged"), money(summary.balance_charged_cents)))
    if summary.refunded_cents:
        rows.append((_("Refunded to your card"), money(summary.refunded_cents)))
    return rows


def has_statement(session: Session, appointment_id: int) -> bool:
    return session.scalar(select(Encounter.id).where(Encounter.appointment_id == appointment_id,
                                                     Encounter.status == "signed")) is not None


def statement(session: Session, appointment: Appointment) -> Statement | None:
    """The statement of an appointment whose encounter is signed; None otherwise."""
    encounter = session.scalar(select(Encounter).options(
        selectinload(Encounter.lines).selectinload(EncounterLine.billing_code))
        .where(Encounter.appointment_id == appointment.id, Encounter.status == "signed"))
    if encounter is None:
        return None
    lines = [StatementLine(line.position, line.code_system, line.code, line.modifier or "",
                           line.billing_code.descriptor if line.billing_code is not None else "",
                           line.units, line.unit_price_cents or 0, line.amount_cents or 0)
             for line in encounter.lines]
    total = encounter.total_cents if encounter.total_cents is not None else sum(l.amount_cents for l in lines)
    hybrid = appointment.payment_timing == "hybrid"
    charge = session.scalar(select(Charge).where(Charge.appointment_id == appointment.id,
                                                 Charge.purpose == ("balance" if hybrid else "visit")))
    case = session.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id)) if charge else None
    payments: list[StatementPayment] = []
    paid = refunded = written_off = 0
    if charge is not None:
        paid = charge.amount_captured_cents
        attempts = session.scalars(select(PaymentAttempt).where(
            PaymentAttempt.charge_id == charge.id, PaymentAttempt.status == "succeeded",
            PaymentAttempt.amount_captured_cents > 0).order_by(PaymentAttempt.captured_at, PaymentAttempt.number))
        payments = [StatementPayment(a.captured_at or a.updated_at, a.amount_captured_cents, a.card_brand,
                                     a.card_last4) for a in attempts]
        refunded = sum(r.amount_cents for r in session.scalars(select(Refund).where(
            Refund.charge_id == charge.id, Refund.status.in_(("pending", "succeeded")))))
        balance = max(0, charge.amount_cents - charge.amount_captured_cents)
    else:
        balance = total if appointment.payment_timing == "post_visit" else 0
    summary = None
    if hybrid:
        from app.services import claims

        summary = claims.hybrid_summary(session, appointment)
        deposit = claims.deposit_charge(session, appointment.id)
        if deposit is not None:                  # paid and refunded count the deposit too
            paid += deposit.amount_captured_cents
            refunded += summary.refunded_cents if summary is not None else 0
            payments = [StatementPayment(a.captured_at or a.updated_at, a.amount_captured_cents, a.card_brand,
                                         a.card_last4) for a in session.scalars(select(PaymentAttempt).where(
                                             PaymentAttempt.charge_id == deposit.id,
                                             PaymentAttempt.status == "succeeded",
                                             PaymentAttempt.amount_captured_cents > 0))] + payments
        if charge is None:
            balance = 0
    status = case.status if case is not None else ("pending" if balance else "none")
    if status == "written_off":
        written_off, balance = balance, 0
    label = PATIENT_LABELS.get(status, "")
    if status == "payment_plan" and case is not None and case.plan_instalments:
        label = _l("Payment plan: %(paid)s of %(total)s payments made", paid=case.plan_paid,
                   total=case.plan_instalments)
    if status == "none":
        label = _l("Paid in full") if paid and paid >= total else _l("Nothing more is due for this visit")
        if summary is not None:
            label = summary.status_words
    provider = appointment.provider
    return Statement(appointment_id=appointment.id, encounter_id=encounter.id, patient_id=appointment.patient_id,
                     service_at=appointment.starts_at, signed_at=encounter.signed_at,
                     visit_name=appointment.type.name if appointment.type else "Visit",
                     provider_name=provider.display_name if provider is not None else "",
                     lines=lines, total_cents=total, paid_cents=paid, refunded_cents=refunded,
                     balance_cents=balance, written_off_cents=written_off, payments=payments,
                     status=status, status_label=label, hybrid=summary)


# -- the PDF ----------------------------------------------------------------------------------

# Core fonts speak Latin-1: the usual typographic characters become their plain look-alikes.
_PLAIN = str.maketrans({"\u2014": "-", "\u2013": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                        "\u201d": '"', "\u2026": "...", "\u2022": "*", "\u00a0": " ", "\u2212": "-"})


def _latin1(text: str | None) -> str:
    return (text or "").translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def _local(at: datetime | None, tz: str, fmt: str = "%B %-d, %Y") -> str:
    if at is None:
        return ""
    try:
        zone = ZoneInfo(tz or "UTC")
    except Exception:       # a bad stored zone must not break the statement
        zone = ZoneInfo("UTC")
    return format_local(at.astimezone(zone), fmt, current_language())


def statement_pdf(statement: Statement, *, clinic, patient_display: str | None = None,
                  compress: bool = True) -> bytes:
    """The statement as a PDF (A4-agnostic Letter page, Helvetica). ``clinic``: name, address,
    phone, timezone (dates are shown in it). ``compress=False`` leaves the content streams
    readable (tests). In the current language (the page's, or ``force_locale``'s): Spanish fits
    Latin-1, the core fonts' encoding (á é í ó ú ñ ü ¿ ¡)."""
    money = _money
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    tz = getattr(clinic, "timezone", None) or "UTC"
    pdf = FPDF(format="Letter", unit="mm")
    pdf.set_compression(compress)
    pdf.set_title(_latin1(_("Statement - appointment %(number)s", number=statement.appointment_id)))
    pdf.set_creator(_latin1(getattr(clinic, "name", "") or "Clinic"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw
    nl = dict(new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(width, 8, _latin1(getattr(clinic, "name", "") or "Clinic"), **nl)
    pdf.set_font("Helvetica", "", 10)
    for part in (getattr(clinic, "address", ""), getattr(clinic, "phone", "")):
        if part:
            pdf.cell(width, 5, _latin1(part), **nl)
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(width, 7, _latin1(_("Itemized statement")), **nl)
    pdf.set_font("Helvetica", "", 10)
    if patient_display:
        pdf.cell(width, 5, _latin1(_("Patient: %(name)s", name=patient_display)), **nl)
    if statement.provider_name:
        visit = _("Appointment #%(number)s: %(visit)s with %(provider)s", number=statement.appointment_id,
                  visit=statement.visit_name, provider=statement.provider_name)
    else:
        visit = _("Appointment #%(number)s: %(visit)s", number=statement.appointment_id, visit=statement.visit_name)
    pdf.cell(width, 5, _latin1(visit), **nl)
    pdf.cell(width, 5, _latin1(_("Date of service: %(date)s", date=_local(statement.service_at, tz))), **nl)
    pdf.cell(width, 5, _latin1(_("Statement date: %(date)s", date=_local(statement.signed_at, tz))), **nl)
    pdf.ln(4)

    columns = ((_("Code"), 0.16, "L"), (_("Description"), 0.42, "L"), (_("Units"), 0.10, "R"),
               (_("Unit price"), 0.16, "R"), (_("Amount"), 0.16, "R"))
    widths = [width * share for _title, share, _align in columns]
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_fill_color(235, 235, 235)
    for (title, _share, align), w in zip(columns, widths):
        pdf.cell(w, 7, _latin1(title), border="B", fill=True, align=align)
    pdf.ln()
    pdf.set_font("Helvetica", "", 10)
    for line in statement.lines:
        code = f"{line.code}{'-' + line.modifier if line.modifier else ''}"
        descriptor = _latin1(line.descriptor)
        # The description wraps; the row is as tall as its wrapped description (and the code's system).
        used = len(pdf.multi_cell(widths[1], 5, descriptor, dry_run=True, output="LINES")) or 1
        height = max(10, 5 * used)
        if pdf.get_y() + height > pdf.h - pdf.b_margin:
            pdf.add_page()
        x, y = pdf.l_margin, pdf.get_y()
        pdf.set_xy(x, y)
        pdf.cell(widths[0], 5, _latin1(code))
        pdf.set_xy(x, y + 5)
        pdf.set_font("Helvetica", "", 7)
        pdf.cell(widths[0], 4, _latin1(line.code_system))
        pdf.set_font("Helvetica", "", 10)
        pdf.set_xy(x + widths[0], y)
        pdf.multi_cell(widths[1], 5, descriptor, new_x=XPos.RIGHT, new_y=YPos.TOP)
        pdf.set_xy(x + widths[0] + widths[1], y)
        pdf.cell(widths[2], 5, str(line.units), align="R")
        pdf.cell(widths[3], 5, money(line.unit_price_cents), align="R")
        pdf.cell(widths[4], 5, money(line.amount_cents), align="R")
        pdf.line(x, y + height, x + width, y + height)
        pdf.set_xy(x, y + height + 1)

    def total_row(label: str, cents: int, bold: bool = False) -> None:
        pdf.set_font("Helvetica", "B" if bold else "", 11 if bold else 10)
        pdf.cell(width - widths[4], 6, _latin1(label), align="R")
        pdf.cell(widths[4], 6, money(cents), align="R", **nl)

    pdf.ln(2)
    total_row(_("Total"), statement.total_cents, bold=True)
    total_row(_("Paid"), statement.paid_cents)
    if statement.refunded_cents:
        total_row(_("Refunded"), statement.refunded_cents)
    if statement.written_off_cents:
        total_row(_("Waived by the clinic"), statement.written_off_cents)
    if statement.hybrid is not None:
        pdf.set_font("Helvetica", "", 10)
        for label, value in hybrid_rows(statement.hybrid):
            pdf.cell(width - widths[4], 6, _latin1(label), align="R")
            pdf.cell(widths[4], 6, _latin1(value), align="R", **nl)
    total_row(_("Balance due"), statement.balance_cents, bold=True)
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(width, 5, _latin1(_("Status: %(status)s", status=statement.status_label)), **nl)
    if statement.payments:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(width, 6, _latin1(_("Payments")), **nl)
        pdf.set_font("Helvetica", "", 10)
        for p in statement.payments:
            pdf.cell(width - widths[4], 5, _latin1(f"{_local(p.at, tz)}  {p.card}"))
            pdf.cell(widths[4], 5, money(p.amount_cents), align="R", **nl)
    if statement.hybrid is not None and statement.hybrid.explanation:
        pdf.ln(3)
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(width, 4, _latin1(statement.hybrid.explanation), **nl)
    pdf.ln(6)
    pdf.set_font("Helvetica", "I", 8)
    if getattr(clinic, "phone", ""):
        note = _("Prices are those in force on the date of service, as signed by your provider. Questions about "
                 "this statement: contact the clinic at %(phone)s.", phone=clinic.phone)
    else:
        note = _("Prices are those in force on the date of service, as signed by your provider. Questions about "
                 "this statement: contact the clinic.")
    pdf.multi_cell(width, 4, _latin1(note), **nl)
    return bytes(pdf.output())
