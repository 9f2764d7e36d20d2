"""The admin's FHIR API clients (/admin/fhir-clients, issue 17): the systems allowed to read the
clinic's records over FHIR, their scopes, and a form to add one (its secret shown once, on the page
that answers the form) or revoke one (its tokens stop working at once). No PHI."""
from __future__ import annotations

from flask import abort, flash, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectMultipleField, StringField, widgets
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app.access import access
from app.blueprints.admin import bp
from app.extensions import db
from app.models import FhirClient
from app.services import DomainError, fhir_clients, fhir_resources
from app.services.audit import Actor
from app.web import now, redirect_htmx, render

SCOPE_CHOICES = [SelectChoice("system/*.read", "Everything (system/*.read)")] + [
    SelectChoice(f"system/{rt.name}.read", rt.name) for rt in fhir_resources.REGISTRY]


class ClientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Name the system (like the hospital's EHR)."),
                                           Length(max=120)])
    scopes = SelectMultipleField("Scopes", choices=SCOPE_CHOICES,
                                 validators=[DataRequired("Grant at least one scope.")],
                                 option_widget=widgets.CheckboxInput(), widget=widgets.ListWidget(prefix_label=False))


class RevokeForm(FlaskForm):
    pass


def _page(form, *, created=None, status=200):
    clients = db.session.scalars(select(FhirClient).order_by(FhirClient.id)).all()
    return render("admin/fhir_clients.html", status=status, form=form, clients=clients, created=created,
                  revoke_form=RevokeForm())


@bp.get("/fhir-clients")
@access("admin", phi=False)
def fhir_clients_page():
    return _page(ClientForm())


@bp.post("/fhir-clients")
@access("admin", phi=False)
def create_fhir_client():
    form = ClientForm()
    if not form.validate_on_submit():
        return _page(form, status=422)
    try:
        made = fhir_clients.create_client(db.session, name=form.name.data, scopes=form.scopes.data,
                                          actor=Actor.of(current_user), created_by_id=current_user.id)
    except DomainError as error:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(error)]
        return _page(form, status=422)
    db.session.commit()
    return _page(ClientForm(formdata=None), created=made)


@bp.post("/fhir-clients/<int:client_pk>/revoke")
@access("admin", phi=False)
def revoke_fhir_client(client_pk: int):
    client = db.session.get(FhirClient, client_pk)
    if client is None:
        abort(404)
    if not RevokeForm().validate_on_submit():
        flash("Your form expired. Reload the page and try again.", "error")
        return redirect_htmx(url_for("admin.fhir_clients_page"))
    fhir_clients.revoke_client(db.session, client, actor=Actor.of(current_user), now=now())
    db.session.commit()
    flash(f"Revoked {client.name}: its tokens no longer work.", "success")
    return redirect_htmx(url_for("admin.fhir_clients_page"))
