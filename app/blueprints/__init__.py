"""Blueprints parse input, call one service, render a page or a fragment, and
commit once at the edge."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.blueprints import (admin, assets, auth, booking, checkout, errors, filters, home, links, staff,
                                webhooks)
    from app.blueprints import account, billing, twilio
    from app.blueprints import chain
    from app.blueprints import health
    from app.blueprints.admin import access_review  # noqa: F401  (the access review: routes on admin.bp)

    app.register_blueprint(assets.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(booking.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(links.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(staff.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(twilio.bp)
    app.register_blueprint(chain.bp)
    app.register_blueprint(billing.bp)
    app.register_blueprint(health.bp)     # /healthz, /readyz
    from app.blueprints import ops

    app.register_blueprint(ops.bp)        # /admin/metrics, /admin/ops
    from app.blueprints import pay

    app.register_blueprint(pay.bp)        # /pay/<token>, /appointments/<id>/pay: a post-visit balance
    from app.blueprints import intake

    app.register_blueprint(intake.bp)     # /intake/...: patient intake (issue 15), card photos, staff view
    from app.blueprints import waitlist

    app.register_blueprint(waitlist.bp)   # /waitlist, /w/<token>: the waitlist (issue 17)
    from app.blueprints import fhir

    app.register_blueprint(fhir.bp)       # /fhir/...: the read-only FHIR R4 API for authorized systems (issue 17)
    if app.config["SETTINGS"].APP_ENV == "development":     # the outbox: never in test or production
        from app.blueprints import dev

        app.register_blueprint(dev.bp)
    errors.register(app)
    filters.register(app)
