"""The admin's fee schedule (/admin/fees): billing codes with their system, the price in force and the
changes to come; a form to set a price (code, modifier, dollars, effective from) and one to add a
LOCAL code. Codes and prices are not PHI."""
from __future__ import annotations

from flask import flash, request, url_for
from flask_wtf import FlaskForm
from wtforms import DateField, StringField, TextAreaField, ValidationError
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from app.access import access
from app.blueprints.admin import bp
from app.blueprints.forms import date_in_range, positive_dollars
from app.extensions import db
from app.services import codes, fees
from app.services.refunds import money
from app.web import actor, now, redirect_htmx, render

LISTED = 200


class PriceForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the code, like G0438."), Length(max=40)])
    modifier = StringField("Modifier", validators=[Optional(), Length(max=2, message="A modifier is two characters.")])
    amount = StringField("Price (USD)", validators=[DataRequired("Enter the price."), positive_dollars("The price")])
    effective_from = DateField("Effective from", validators=[InputRequired("Choose the first day of the price."),
                                                             date_in_range])

    cents: int | None = None                  # set by positive_dollars
    billing_code = None                       # set by validate_code

    def validate_code(self, field):
        found = codes.find(db.session, field.data)
        if not found:
            raise ValidationError("No code is written like that. Add it as a local code below, "
                                  "or import the clinic's code file.")
        if len(found) > 1:
            systems = ", ".join(f"{c.system}:{c.code}" for c in found)
            raise ValidationError(f"That code is in several systems: write one of {systems}.")
        self.billing_code = found[0]

    def validate_modifier(self, field):
        try:
            field.data = fees.normalize_modifier(field.data)
        except fees.PriceError as error:
            raise ValidationError(str(error)) from None


class LocalCodeForm(FlaskForm):
    code = StringField("Local code", validators=[DataRequired("Enter the code, like LOC-VISIT."), Length(max=20)])
    descriptor = TextAreaField("Description", validators=[DataRequired("Describe the code."),
                                                          Length(max=codes.DESCRIPTOR_MAX)])

    def validate_code(self, field):
        try:
            field.data = codes.check_code(codes.normalize_code(field.data))
        except codes.CodeError as error:
            raise ValidationError(str(error)) from None


def _page(price_form=None, code_form=None, *, block=None, status=200):
    today = fees.clinic_today(db.session, now())
    query = request.args.get("q", "")[:100]
    if price_form is None:
        price_form = PriceForm(formdata=None, code=request.args.get("code", "")[:40], effective_from=today)
    rows = fees.schedule(db.session, today, query=query, limit=LISTED)
    return render("admin/fees.html", block=block, status=status, rows=rows, today=today, query=query,
                  price_form=price_form, code_form=code_form or LocalCodeForm(formdata=None),
                  total=codes.count_codes(db.session), listed=LISTED, money=money)


@bp.get("/fees")
@access("admin", phi=False)
def fees_page():
    return _page()


@bp.post("/fees/prices")
@access("admin", phi=False)
def set_price():
    form = PriceForm()
    if not form.validate_on_submit():
        return _page(price_form=form, block="price_form", status=422)
    code = form.billing_code
    try:
        fees.set_price(db.session, code_id=code.id, modifier=form.modifier.data or "", price_cents=form.cents,
                       effective_from=form.effective_from.data, actor=actor())
    except fees.PriceError as error:
        db.session.rollback()
        form.amount.errors = [*form.amount.errors, str(error)]
        return _page(price_form=form, block="price_form", status=422)
    db.session.commit()
    modifier = f" with modifier {form.modifier.data}" if form.modifier.data else ""
    flash(f"{code.system} {code.code}{modifier}: {money(form.cents)} from {form.effective_from.data.isoformat()}.",
          "success")
    return redirect_htmx(url_for("admin.fees_page"))


@bp.post("/fees/codes")
@access("admin", phi=False)
def add_code():
    form = LocalCodeForm()
    if form.validate_on_submit():
        try:
            code = codes.add_local(db.session, code=form.code.data, descriptor=form.descriptor.data, actor=actor())
        except codes.CodeError as error:
            db.session.rollback()
            form.code.errors = [*form.code.errors, str(error)]
        else:
            db.session.commit()
            flash(f"Local code {code.code} added. Set its price above.", "success")
            return redirect_htmx(url_for("admin.fees_page", code=f"LOCAL:{code.code}"))
    return _page(code_form=form, block="code_form", status=422)
