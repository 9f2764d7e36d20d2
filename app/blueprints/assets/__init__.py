"""Front-end packages installed from the npm registry at set-up (never committed)."""
from flask import Blueprint, abort, current_app, send_file

from app.access import PUBLIC, access

bp = Blueprint("assets", __name__)


@bp.get("/vendor/htmx.min.js")
@access(PUBLIC)
def htmx():
    path = current_app.config["SETTINGS"].HTMX_PATH
    if not path.exists():
        current_app.logger.warning("htmx is not installed at %s: run the set-up (make setup)", path)
        abort(404)
    return send_file(path, mimetype="text/javascript", max_age=3600)
