"""Command-line tools: ``flask audit verify|link|anchor`` and ``flask seed``."""
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.extensions import db


def register_cli(app: Flask) -> None:
    audit_cli = AppGroup("audit", help="The audit trail.")

    @audit_cli.command("verify")
    def verify():
        """Walk the links, then check the rows not yet linked; exit 1 and name the first break if any."""
        from app.services import audit

        result = audit.verify(db.session, key=current_app.config["SETTINGS"].AUDIT_HMAC_KEY)
        click.echo(str(result))
        click.echo(f"linked: {result.linked} rows; not yet linked: {result.lag}")
        sys.exit(0 if result.ok else 1)

    @audit_cli.command("link")
    def link():
        """Run the sequencer once: link every committed, unlinked row."""
        from app.services import audit

        click.echo(f"linked {audit.link_all(db.session)} rows")

    @audit_cli.command("anchor")
    def anchor():
        """Write the chain head (the last link) to the log (an anchor outside the database)."""
        from app.services import audit

        head = audit.anchor(db.session)
        click.echo(f"head position={head[0]} hash={head[1]}" if head else "no links yet")

    app.cli.add_command(audit_cli)

    @app.cli.command("seed")
    def seed():
        """Seed the demo clinic (once; a second run adds nothing)."""
        from app.services.seed import seed_demo

        logins = seed_demo(db.session)
        db.session.commit()
        click.echo("Demo logins:")
        for role, email, password in logins:
            click.echo(f"  {role:<9} {email:<22} {password}")
