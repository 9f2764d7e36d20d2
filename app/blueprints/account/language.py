"""The patient's language (issue 17): the footer's switch (any page, signed in or not) and the
setting on the account pages. The switch sets the ``lang`` cookie and, for a signed-in patient,
their profile's language too (which also picks the language of their messages and PDFs)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, request, url_for
from flask_babel import force_locale, gettext as _, lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import RadioField
from wtforms.fields.choices import SelectChoice

from app import i18n
from app.access import PUBLIC, access
from app.blueprints.account.views import bp
from app.extensions import db
from app.services import accounts
from app.web import actor, redirect_htmx, render

LANGUAGE_NAMES = {"en": "English", "es": "Español"}      # each in its own language: never translated
COOKIE_MAX_AGE = 365 * 24 * 3600


class LanguageForm(FlaskForm):
    language = RadioField(_l("Language"), choices=[SelectChoice(k, v) for k, v in LANGUAGE_NAMES.items()],
                          validate_choice=True)


def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if not (parts.scheme or parts.netloc) and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("home.index")


def _remember(response, locale: str):
    settings = current_app.config["SETTINGS"]
    response.set_cookie(i18n.LANG_COOKIE, locale, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Lax",
                        secure=settings.is_production)
    return response


def _save_for_patient(locale: str) -> None:
    if getattr(current_user, "is_authenticated", False) and current_user.role == "patient":
        accounts.set_locale(db.session, current_user, locale, actor=actor())
        db.session.commit()


@bp.post("/language")
@access(PUBLIC, phi=False)
def switch_language():
    """The footer's switch: back to the page it was pressed on, in the chosen language."""
    locale = request.form.get("lang")
    target = _safe_next(request.form.get("next"))
    if locale not in i18n.LOCALES:
        return redirect(target, code=303)
    _save_for_patient(locale)
    return _remember(redirect(target, code=303), locale)


@bp.route("/account/language", methods=["GET", "POST"])
@access("patient", phi=False)
def language_page():
    form = LanguageForm(data={"language": i18n.page_locale()} if request.method == "GET" else None)
    if request.method == "POST":
        if form.validate_on_submit():
            locale = form.language.data
            _save_for_patient(locale)
            with force_locale(locale):
                flash(_("Language saved. Your pages, messages and statements use it from now on."), "success")
            return _remember(redirect_htmx(url_for("account.language_page")), locale)
        return render("account/language.html", form=form, names=LANGUAGE_NAMES, status=422)
    return render("account/language.html", form=form, names=LANGUAGE_NAMES)
