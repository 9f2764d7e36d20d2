"""``flask fhir create-client NAME --scope system/Patient.read ...``, ``revoke-client``, ``list-clients``:
the FHIR API's OAuth2 clients (issue 17). The secret is printed once; only its hash is kept."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db

fhir_cli = AppGroup("fhir", help="FHIR API clients (OAuth2 client credentials).")


def _now():
    return current_app.extensions["clock"].now()


@fhir_cli.command("create-client")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A SMART scope, e.g. system/Patient.read or system/*.read (repeatable).")
def create_client(name: str, scopes: tuple[str, ...]):
    """Create a client; prints its client_id and secret (shown once)."""
    from app.services import DomainError, fhir_clients
    from app.services.audit import Actor

    try:
        made = fhir_clients.create_client(db.session, name=name, scopes=list(scopes), actor=Actor.system("cli"))
    except DomainError as error:
        db.session.rollback()
        click.echo(str(error), err=True)
        sys.exit(2)
    db.session.commit()
    click.echo(f"client_id: {made.client.client_id}")
    click.echo(f"client_secret: {made.secret}")
    click.echo(f"scopes: {' '.join(made.client.scopes)}")
    click.echo("The secret is shown once: store it now.")


@fhir_cli.command("revoke-client")
@click.argument("client_id")
def revoke_client(client_id: str):
    """Revoke a client and every token it holds."""
    from app.services import fhir_clients
    from app.services.audit import Actor

    client = fhir_clients.find_client(db.session, client_id)
    if client is None:
        click.echo("no such client", err=True)
        sys.exit(1)
    fhir_clients.revoke_client(db.session, client, actor=Actor.system("cli"), now=_now())
    db.session.commit()
    click.echo(f"revoked {client_id}")


@fhir_cli.command("list-clients")
def list_clients():
    from sqlalchemy import select

    from app.models import FhirClient

    for client in db.session.scalars(select(FhirClient).order_by(FhirClient.id)):
        state = "active" if client.active else "revoked"
        click.echo(f"{client.client_id}\t{state}\t{' '.join(client.scopes)}\t{client.name}")
    db.session.rollback()
