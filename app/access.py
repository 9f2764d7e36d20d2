"""Who may use each route, and whether it shows PHI. Every view declares both with
``@access(rules..., phi=...)``; ``enforce()`` runs before each request and denies
any endpoint that did not declare a rule, so a forgotten declaration fails closed
(and the route table test fails).

``phi`` names what a route shows: a string (the kind of record, e.g. ``"appointment"``)
for a page that shows PHI, ``False`` for one that shows none. A route that leaves it out
is treated as showing PHI (never cached, each view audited) and fails the route-table
test. app/phi.py writes the one audit event per PHI view."""
from __future__ import annotations

from flask import Flask, abort, redirect, request, url_for
from flask_login import current_user

from app.models.user import ROLES, STAFF_ROLES

PUBLIC = "public"            # anyone, signed in or not
AUTHENTICATED = "authenticated"
STAFF = "staff"
_KNOWN = {PUBLIC, AUTHENTICATED, STAFF, *ROLES}


def access(*rules: str, phi: str | bool | None = None):
    unknown = set(rules) - _KNOWN
    if not rules or unknown:
        raise ValueError(f"access(): unknown or missing rule(s) {unknown or rules}")
    if phi is True or (isinstance(phi, str) and not phi.strip()):
        raise ValueError("access(): phi= names the kind of record shown (a word), or False for none")

    def mark(view):
        view.access_rules = frozenset(rules)
        view.phi = phi
        return view

    return mark


UNDECLARED = object()


def phi_for(app: Flask, endpoint: str):
    """What the endpoint declared it shows: a kind (str), False, or UNDECLARED."""
    declared = app.extensions.setdefault("phi", {})
    if endpoint in declared:
        return declared[endpoint]
    value = getattr(app.view_functions.get(endpoint), "phi", None)
    return UNDECLARED if value is None else value


def allowed_roles(rules: frozenset[str]) -> set[str] | None:
    """The roles a rule set admits, or None for public."""
    if PUBLIC in rules:
        return None
    roles = set()
    for rule in rules:
        if rule == AUTHENTICATED:
            roles.update(ROLES)
        elif rule == STAFF:
            roles.update(STAFF_ROLES)
        else:
            roles.add(rule)
    return roles


def rules_for(app: Flask, endpoint: str) -> frozenset[str] | None:
    declared = app.extensions.setdefault("access", {})
    if endpoint in declared:
        return declared[endpoint]
    view = app.view_functions.get(endpoint)
    return getattr(view, "access_rules", None)


def declare(app: Flask, endpoint: str, *rules: str, phi: str | bool = False) -> None:
    """For endpoints whose view we do not write (Flask's static files)."""
    app.extensions.setdefault("access", {})[endpoint] = frozenset(rules)
    app.extensions.setdefault("phi", {})[endpoint] = phi


def enforce():
    from flask import current_app

    if request.endpoint is None:        # 404 / 405: let Flask answer
        return None
    rules = rules_for(current_app, request.endpoint)
    if rules is None:
        current_app.logger.error("route %s declares no access rule: denied", request.endpoint)
        abort(403)
    roles = allowed_roles(rules)
    if roles is None:
        return None
    if not current_user.is_authenticated:
        target = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
        if request.headers.get("HX-Request") == "true":
            response = current_app.response_class(status=401)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
    if current_user.role not in roles:
        abort(403)
    return None
