"""A provider's weekly hours and time off. Providers edit their own; admins any provider's."""
from flask import abort, flash, redirect, url_for
from wtforms.fields.choices import SelectChoice

from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider, provider_or_404
from app.blueprints.staff.forms import ExceptionForm, RuleForm
from app.extensions import db
from app.models import Provider
from app.services import staffing
from app.web import actor, is_htmx, now, redirect_htmx, render

TEMPLATE = "staff/availability.html"


def _rule_form(provider: Provider, *, fresh: bool = False) -> RuleForm:
    form = RuleForm(formdata=None) if fresh else RuleForm()
    form.type_id.choices = [SelectChoice(0, "Any visit type")] + [
        SelectChoice(t.id, t.name) for t in provider.types]
    return form


def _page(provider: Provider, *, block: str | None = None, status: int = 200, rule_form=None,
          exception_form=None, conflicts=None, added=None, rules_notice=None, exceptions_notice=None):
    exceptions = staffing.exceptions_of(db.session, provider)
    at = now()
    affected = {e.id: staffing.blocking_overlaps(db.session, provider, starts_local=e.starts_local,
                                                 ends_local=e.ends_local, now=at) for e in exceptions}
    return render(TEMPLATE, block=block, status=status, provider=provider,
                  rules=staffing.rules_of(db.session, provider), exceptions=exceptions, affected=affected,
                  types={t.id: t for t in provider.types}, weekdays=staffing.WEEKDAYS,
                  rule_form=rule_form or _rule_form(provider, fresh=True),
                  exception_form=exception_form or ExceptionForm(formdata=None),
                  conflicts=conflicts, added=added, rules_notice=rules_notice,
                  exceptions_notice=exceptions_notice)


def _done(provider: Provider, block: str, notice: str):
    """After a change: the refreshed section for htmx, a redirect for a plain form post."""
    if is_htmx():
        return _page(provider, block=block, **{f"{block}_notice": notice})
    flash(notice, "success")
    return redirect_htmx(url_for("staff.availability", provider_id=provider.id))


@bp.get("/availability")
@access("provider", "admin", phi=False)
def my_availability():
    """A provider's own editor; an admin picks a provider from the list."""
    from flask_login import current_user

    if current_user.role == "admin":
        return redirect(url_for("staff.providers"), code=303)
    provider = own_provider()
    if provider is None:
        abort(404)
    return redirect(url_for("staff.availability", provider_id=provider.id), code=303)


@bp.get("/providers/<int:provider_id>/availability")
@access("provider", "admin", phi=False)
def availability(provider_id: int):
    return _page(provider_or_404(provider_id))


@bp.post("/providers/<int:provider_id>/rules")
@access("provider", "admin", phi=False)
def add_rule(provider_id: int):
    provider = provider_or_404(provider_id)
    form = _rule_form(provider)
    if form.validate_on_submit():
        try:
            staffing.add_rule(db.session, provider, actor=actor(), weekday=form.weekday.data,
                              start=form.start.data, end=form.end.data, type_id=form.type_id.data or None)
        except staffing.StaffingError as error:
            db.session.rollback()
            getattr(form, error.field or "weekday").errors.append(str(error))
        else:
            db.session.commit()
            return _done(provider, "rules", "Hours added.")
    return _page(provider, block="rules", status=422, rule_form=form)


@bp.post("/providers/<int:provider_id>/rules/<int:rule_id>/delete")
@access("provider", "admin", phi=False)
def delete_rule(provider_id: int, rule_id: int):
    provider = provider_or_404(provider_id)
    if not staffing.delete_rule(db.session, provider, actor=actor(), rule_id=rule_id):
        abort(404)
    db.session.commit()
    return _done(provider, "rules", "Hours removed.")


@bp.post("/providers/<int:provider_id>/exceptions")
@access("provider", "admin", phi=False)
def add_exception(provider_id: int):
    provider = provider_or_404(provider_id)
    form = ExceptionForm()
    if form.validate_on_submit():
        try:
            added = staffing.add_exception(db.session, provider, actor=actor(),
                                           starts_local=form.starts_local.data, ends_local=form.ends_local.data,
                                           reason=form.reason.data, note=form.note.data or "", now=now())
        except staffing.StaffingError as error:
            db.session.rollback()
            getattr(form, error.field or "starts_local").errors.append(str(error))
        else:
            db.session.commit()
            if not added.conflicts:
                return _done(provider, "exceptions", "Time off saved.")
            # Saved, but bookings fall inside it: list them on this response, never silently.
            return _page(provider, block="exceptions", added=added.exception, conflicts=added.conflicts,
                         exceptions_notice="Time off saved.")
    return _page(provider, block="exceptions", status=422, exception_form=form)


@bp.post("/providers/<int:provider_id>/exceptions/<int:exception_id>/delete")
@access("provider", "admin", phi=False)
def delete_exception(provider_id: int, exception_id: int):
    provider = provider_or_404(provider_id)
    if not staffing.delete_exception(db.session, provider, actor=actor(), exception_id=exception_id):
        abort(404)
    db.session.commit()
    return _done(provider, "exceptions", "Time off removed.")
