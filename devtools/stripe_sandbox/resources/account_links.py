"""Account links (``POST /v1/account_links``) and the sandbox's onboarding page they point to.

``url`` is ``{api_base}/_sandbox/onboarding/{link}``: one HTML form pre-filled with Stripe's test data.  Submitting
it completes onboarding (accounts.complete_onboarding) and redirects (303) to ``return_url``.  A link past its
``expires_at`` (5 minutes on the sandbox clock) or already used redirects to ``refresh_url`` instead.
"""
from __future__ import annotations

import html

from .. import errors
from ..core import Ctx
from ..store import new_id
from . import accounts

LIFETIME = 300
TYPES = ("account_onboarding", "account_update")


def create(ctx: Ctx):
    ctx.allow("account", "type", "refresh_url", "return_url", "collect", "collection_options")
    acct_id = ctx.str_("account", required=True)
    type_ = ctx.str_("type", required=True, choices=TYPES)
    refresh_url = ctx.str_("refresh_url", required=True)
    return_url = ctx.str_("return_url", required=True)
    for name, url in (("refresh_url", refresh_url), ("return_url", return_url)):
        if not url.startswith(("http://", "https://")):
            raise errors.invalid("Not a valid URL", param=name, code="url_invalid")
    acct = ctx.store.get(acct_id, "account")
    if acct is None:
        raise errors.invalid(f"No such account: '{acct_id}'", param="account", code="resource_missing")
    if type_ == "account_update" and acct["type"] != "custom":
        raise errors.invalid("You cannot create `account_update` type Account Links for accounts that are not "
                             "custom accounts.", param="type")
    link_id = new_id("alink")
    now = ctx.now()
    ctx.store.insert({"id": link_id, "object": "sandbox_account_link", "created": now, "expires_at": now + LIFETIME,
                      "account": acct_id, "type": type_, "refresh_url": refresh_url, "return_url": return_url,
                      "used": False})
    return {"object": "account_link", "created": now, "expires_at": now + LIFETIME,
            "url": f"{ctx.api_base}/_sandbox/onboarding/{link_id}"}


def _redirect(url: str):
    body = f'<!doctype html><html lang="en"><title>Continue</title><a href="{html.escape(url)}">Continue</a>'.encode()
    return 303, "text/html; charset=utf-8", body, {"Location": url}


def _usable(ctx: Ctx, link_id: str):
    link = ctx.store.get(link_id, "sandbox_account_link")
    if link is None:
        return None, (404, "text/html; charset=utf-8",
                      b'<!doctype html><html lang="en"><title>Link not found</title>'
                      b"<p>This onboarding link does not exist.</p>", {})
    if link["used"] or ctx.now() >= link["expires_at"]:
        return None, _redirect(link["refresh_url"])
    return link, None


FIELDS = [  # name, label, Stripe's test value
    ("business_name", "Business name", "Sandbox Test Clinic"),
    ("url", "Business website", "https://accessible.stripe.com"),
    ("product_description", "What you sell", "Health care services"),
    ("first_name", "First name", "Jenny"),
    ("last_name", "Last name", "Rosen"),
    ("email", "Email", "jenny.rosen@example.com"),
    ("phone", "Phone", "0000000000"),
    ("dob", "Date of birth", "1901-01-01"),
    ("address_line1", "Address", "address_full_match"),
    ("city", "City", "San Francisco"),
    ("postal_code", "ZIP", "94103"),
    ("ssn_last_4", "Last 4 of SSN", "0000"),
    ("routing_number", "Routing number", "110000000"),
    ("account_number", "Account number", "000123456789"),
]


def page(ctx: Ctx, form: dict, link):
    """GET /_sandbox/onboarding/{link}: the onboarding form."""
    link_obj, early = _usable(ctx, link)
    if early:
        return early
    acct = ctx.store.get(link_obj["account"], "account")
    rows = "\n".join(
        f'<label>{html.escape(label)} <input name="{name}" value="{html.escape(value)}"></label>'
        for name, label, value in FIELDS)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox Connect onboarding</title>
<style>body{{font-family:sans-serif;max-width:34em;margin:2em auto}}label{{display:block;margin:.4em 0}}
input{{margin-left:.5em}}button{{margin-top:1em;padding:.5em 1.5em}}</style></head>
<body><h1>Set up payouts</h1>
<p>Stripe sandbox onboarding for <code id="account">{html.escape(acct["id"])}</code>. Test data is filled in;
the account numbers 000111111116 and 000111111113 make payouts fail (<code>no_account</code>,
<code>account_closed</code>).</p>
<form id="onboarding" method="post" action="/_sandbox/onboarding/{html.escape(link)}">
{rows}
<label><input type="checkbox" name="tos" value="accepted" checked> I accept the Stripe Connected Account
Agreement</label>
<button type="submit" id="submit">Agree and submit</button>
</form></body></html>"""
    return 200, "text/html; charset=utf-8", body.encode(), {"Cache-Control": "no-store"}


def submit(ctx: Ctx, form: dict, link):
    """POST /_sandbox/onboarding/{link}: completes onboarding and redirects to return_url."""
    link_obj, early = _usable(ctx, link)
    if early:
        return early
    link_obj["used"] = True
    ctx.store.save(link_obj)
    acct = ctx.store.get(link_obj["account"], "account")
    accounts.complete_onboarding(ctx, acct, {k: v for k, v in form.items() if isinstance(v, str)})
    return _redirect(link_obj["return_url"])


def register(r):
    r.add("POST", "/v1/account_links", create)
    r.page("GET", "/_sandbox/onboarding/{link}", page)
    r.page("POST", "/_sandbox/onboarding/{link}", submit)
