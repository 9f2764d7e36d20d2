"""Blueprints parse input, call one service, render a page or a fragment, and
commit once at the edge."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.blueprints import admin, assets, auth, booking, checkout, errors, filters, home, staff, webhooks

    app.register_blueprint(assets.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(booking.bp)
    app.register_blueprint(checkout.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(staff.bp)
    errors.register(app)
    filters.register(app)
