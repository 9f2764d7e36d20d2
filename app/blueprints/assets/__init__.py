"""Front-end files: our own (app/static) and packages installed from the npm registry at set-up
(never committed), each linked with a fingerprint of its content so browsers may keep it for a year.

Templates link them with ``static_url("css/app.css")`` and ``vendor_url("htmx.min.js")``: the URL
carries ``?v=<hash of the content>``. A request whose ``v`` is the file's current hash is answered
``Cache-Control: public, max-age=31536000, immutable``; any other (no ``v``, a stale one) ``no-cache``.
Pages themselves stay ``no-store`` (``security_headers`` in app/__init__.py).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, abort, current_app, request, send_file, url_for

from app.access import PUBLIC, access

bp = Blueprint("assets", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_digests: dict[Path, tuple[int, int, str]] = {}


def fingerprint(path: Path) -> str | None:
    """The first 12 hex digits of the file's SHA-256 (recomputed when its size or mtime changes)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    cached = _digests.get(path)
    if cached and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    _digests[path] = (stat.st_mtime_ns, stat.st_size, digest)
    return digest


def _static_path(filename: str) -> Path | None:
    folder = Path(current_app.static_folder)
    try:
        path = (folder / filename).resolve()
    except (ValueError, OSError):        # a NUL byte, a name the file system refuses: no such file
        return None
    if folder.resolve() not in path.parents:
        return None
    return path


def _vendor_files() -> dict[str, tuple[str, Path]]:
    """Installed package files we serve: name -> (endpoint, path on disk)."""
    return {"htmx.min.js": ("assets.htmx", current_app.config["SETTINGS"].HTMX_PATH)}


@bp.app_template_global("static_url")
def static_url(filename: str) -> str:
    """/static/<filename>?v=<content hash>. Outside debug mode the files do not change while the
    process lives (a deploy restarts it), so each URL is worked out once per process."""
    urls = current_app.extensions.setdefault("static_urls", {})
    found = urls.get(filename)
    if found is None:
        path = _static_path(filename)
        version = fingerprint(path) if path else None
        found = url_for("static", filename=filename, **({"v": version} if version else {}))
        if not current_app.debug:
            urls[filename] = found
    return found


@bp.app_template_global("vendor_url")
def vendor_url(name: str) -> str:
    """/vendor/<name>?v=<content hash> for an installed front-end package."""
    endpoint, path = _vendor_files()[name]
    version = fingerprint(path)
    return url_for(endpoint, **({"v": version} if version else {}))


def cache_control() -> str | None:
    """The Cache-Control for a static or vendor file request, None for anything else."""
    if request.endpoint == "static":
        path = _static_path((request.view_args or {}).get("filename", ""))
    else:
        served = {endpoint: path for endpoint, path in _vendor_files().values()}
        if request.endpoint not in served:
            return None
        path = served[request.endpoint]
    asked = request.args.get("v")
    if asked and path is not None and asked == fingerprint(path):
        return IMMUTABLE
    return REVALIDATE


@bp.get("/vendor/htmx.min.js")
@access(PUBLIC, phi=False)
def htmx():
    _, path = _vendor_files()["htmx.min.js"]
    if not path.exists():
        current_app.logger.warning("htmx is not installed at %s: run the set-up (make setup)", path)
        abort(404)
    return send_file(path, mimetype="text/javascript", conditional=True)
