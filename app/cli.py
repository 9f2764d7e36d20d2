"""Command-line tools: ``flask audit verify|link|anchor``, ``flask crypto reencrypt|status``,
``flask grant-app-role``, ``flask codes import`` and ``flask seed``."""
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.extensions import db


def register_cli(app: Flask) -> None:
    audit_cli = AppGroup("audit", help="The audit trail.")

    @audit_cli.command("verify")
    def verify():
        """Walk the links, then check the rows not yet linked; exit 1 and name the first break if any."""
        from app.services import audit

        settings = current_app.config["SETTINGS"]
        result = audit.verify(db.session, key=settings.AUDIT_HMAC_KEY)
        click.echo(str(result))
        click.echo(f"linked: {result.linked} rows; not yet linked: {result.lag}")
        # Rows cut from the end leave an intact (shorter) chain: only the anchors outside the database show it.
        anchored = audit.check_anchors(db.session, settings.audit_anchor_path)
        db.session.rollback()
        click.echo(anchored.message)
        sys.exit(0 if result.ok and anchored.ok else 1)

    @audit_cli.command("link")
    def link():
        """Run the sequencer once: link every committed, unlinked row."""
        from app.services import audit

        click.echo(f"linked {audit.link_all(db.session)} rows")

    @audit_cli.command("anchor")
    def anchor():
        """Append the chain head (the last link) to the anchor file (AUDIT_ANCHOR_PATH) and the log."""
        from app.services import audit

        path = current_app.config["SETTINGS"].audit_anchor_path
        try:
            head = audit.anchor(db.session, path)
        except OSError as error:
            db.session.rollback()
            click.echo(f"could not write the audit anchor to {path}: {error}", err=True)
            sys.exit(1)
        db.session.commit()
        click.echo(f"head position={head[0]} hash={head[1]} anchored in {path}" if head else "no links yet")

    app.cli.add_command(audit_cli)
    app.cli.add_command(grant_app_role_command)

    crypto_cli = AppGroup("crypto", help="Field-level encryption keys (FIELD_KEYS, FIELD_KEY_ACTIVE).")

    @crypto_cli.command("reencrypt")
    @click.option("--batch", default=500, show_default=True, help="Values per column per transaction.")
    def reencrypt(batch: int):
        """Re-encrypt every mutable encrypted column under FIELD_KEY_ACTIVE (after a rotation: the
        retired key stays in FIELD_KEYS). Audit rows are immutable and keep their key ids."""
        from app.services import field_crypto

        totals: dict[str, int] = {}
        while True:
            done = field_crypto.reencrypt_batch(db.session, limit=batch)
            db.session.commit()
            for column, count in done.items():
                totals[column] = totals.get(column, 0) + count
            if not any(done.values()):
                break
        active = field_crypto.current().active
        for column, count in totals.items():
            click.echo(f"{column}: {count} values re-encrypted under {active}")

    @crypto_cli.command("status")
    def status():
        """How many stored values each key id (or legacy plaintext) holds, per encrypted column."""
        from app.services import field_crypto

        click.echo(f"active key: {field_crypto.current().active}")
        for column, usage in field_crypto.key_usage(db.session).items():
            counts = ", ".join(f"{kid}: {count}" for kid, count in usage.items()) or "empty"
            click.echo(f"{column}: {counts}")
        db.session.rollback()

    app.cli.add_command(crypto_cli)

    codes_cli = AppGroup("codes", help="Billing codes (HCPCS, LOCAL, a licensed clinic's CPT file).")

    @codes_cli.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--system", type=click.Choice(["CPT", "HCPCS", "LOCAL"], case_sensitive=False), default=None,
                  help="The system of rows without a system column (e.g. CPT).")
    def import_codes(file: str, system: str | None):
        """Load FILE.csv (columns code, descriptor[, system]): upsert by (system, code), in one
        transaction; a malformed file changes nothing. Descriptors are never printed."""
        from app.services import codes
        from app.services.audit import Actor

        with open(file, "rb") as handle:
            data = handle.read(20 * 1024 * 1024 + 1)
        try:
            if len(data) > 20 * 1024 * 1024:
                raise codes.ImportRefused(["The file is larger than 20 MB: split it."])
            rows = codes.parse_csv(data, system=system.upper() if system else None)
            result = codes.import_codes(db.session, rows, actor=Actor.system("cli"))
        except codes.ImportRefused as refused:
            db.session.rollback()
            click.echo("Nothing was imported. The file has problems:", err=True)
            for problem in refused.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(1)
        db.session.commit()
        systems = ", ".join(f"{name} {count}" for name, count in sorted(result.system_counts.items()))
        click.echo(f"Imported {result.total} codes ({systems}): {result.added} added, "
                   f"{result.updated} updated, {result.unchanged} unchanged.")

    app.cli.add_command(codes_cli)
    from app.cli_fhir import fhir_cli

    app.cli.add_command(fhir_cli)        # flask fhir create-client|revoke-client|list-clients (issue 17)

    @app.cli.command("seed")
    def seed():
        """Seed the demo clinic (once; a second run adds nothing)."""
        from app.services.seed import seed_demo

        logins = seed_demo(db.session)
        db.session.commit()
        click.echo("Demo logins:")
        for role, email, password in logins:
            click.echo(f"  {role:<9} {email:<22} {password}")


@click.command("grant-app-role")
@click.argument("role")
@click.option("--password-env", metavar="VAR", default=None,
              help="Set the role's password from this environment variable (never on the command line).")
@with_appcontext
def grant_app_role_command(role: str, password_env: str | None):
    """Create ROLE (LOGIN, owning nothing) if missing and (re)grant what the app needs: run as the
    owner (DATABASE_URL) after every `flask db upgrade`. The app then connects with DATABASE_APP_URL."""
    import os

    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from app.services import db_roles

    password = None
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            click.echo(f"{password_env} is not set", err=True)
            sys.exit(2)
    engine = create_engine(current_app.config["SQLALCHEMY_OWNER_URI"], poolclass=NullPool)
    try:
        with engine.connect() as conn:
            restricted = db_roles.grant_app_role(conn, role, password=password)
            conn.commit()
    except db_roles.RoleError as error:
        click.echo(f"refused: {error}", err=True)
        sys.exit(1)
    except SQLAlchemyError as error:
        click.echo(f"could not grant {role}: {type(error).__name__}: {getattr(error, 'orig', error)}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo(f"role {role}: granted; SELECT and INSERT only on {', '.join(restricted)}")
