"""Blueprints parse input, call one service, render a page or a fragment, and
commit once at the edge."""
from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.blueprints import admin, assets, auth, errors, home

    app.register_blueprint(assets.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(admin.bp)
    errors.register(app)
