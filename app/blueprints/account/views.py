"""The patient's phone number (verified by an SMS code) and password reset by email."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, make_response, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp

from app.access import PUBLIC, access
from app.blueprints.forms import password_check, phone_check
from app.extensions import db, limiter
from app.services import accounts, passwords, phone
from app.services import sessions as server_sessions
from app.services.audit import Actor
from app.web import actor, is_htmx, now, redirect_htmx, render

bp = Blueprint("account", __name__)

# Throttles (Flask-Limiter strings; a Settings attribute of the same name overrides each).
PHONE_CODE_SEND_LIMIT = "5 per hour"            # per account: each one is an SMS
PHONE_VERIFY_LIMIT = "10 per 15 minutes"        # per account, on top of MAX_TRIES per code
PASSWORD_RESET_LIMIT_PER_EMAIL = "3 per hour"
PASSWORD_RESET_LIMIT_PER_ADDRESS = "10 per hour"


def _settings():
    return current_app.config["SETTINGS"]


def _limit(name: str):
    return lambda: getattr(_settings(), name, None) or globals()[name]


def _account_key() -> str:
    return f"account:{current_user.get_id()}"


def _reset_email_key() -> str:
    return "password-reset:" + accounts.normalize_email(request.form.get("email", ""))


class PhoneForm(FlaskForm):
    phone = StringField(_l("Mobile phone"), validators=[DataRequired(_l("Enter your mobile number.")), phone_check])


class CodeForm(FlaskForm):
    code = StringField(_l("Code from the text message"), validators=[
        DataRequired(_l("Enter the 6-digit code we texted you.")),
        Regexp(r"^\s*\d{6}\s*$", message=_l("The code is 6 digits, like 123456."))])


class SendCodeForm(FlaskForm):
    pass


class ForgotForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email.")),
                                                Email(_l("Enter an email like name@example.com.")), Length(max=254)])


class ResetForm(FlaskForm):
    password = PasswordField(_l("New password"), validators=[DataRequired(_l("Choose a password.")), password_check])
    confirm = PasswordField(_l("Repeat new password"), validators=[DataRequired(_l("Repeat the password.")),
                                                                  EqualTo("password", _l("The passwords do not match."))])


# -- phone -------------------------------------------------------------------------------------------

def _phone_page(status: int = 200, *, phone_form=None, code_form=None, notice=None, error=None):
    user = current_user
    phone_form = phone_form or PhoneForm(formdata=None, data={"phone": user.phone})
    code_form = code_form or CodeForm(formdata=None)
    waiting = phone.pending(db.session, user)
    return render("account/phone.html", block="panel", status=status, user=user, phone_form=phone_form,
                  code_form=code_form, send_form=SendCodeForm(formdata=None), notice=notice, error=error,
                  code_waiting=bool(waiting and waiting.expires_at > now() and waiting.attempts < phone.MAX_TRIES))


@bp.get("/account/phone")
@access("patient", phi="contact")
def phone_page():
    return _phone_page()


@bp.post("/account/phone")
@access("patient", phi="contact")
def change_phone():
    form = PhoneForm()
    if not form.validate_on_submit():
        return _phone_page(422, phone_form=form)
    changed = phone.change_phone(db.session, user=current_user, phone=form.phone.data, actor=actor())
    db.session.commit()
    flash(_("Your number is saved. Verify it to get text messages.") if changed else _("That is already your number."),
          "success" if changed else "info")
    return redirect_htmx(url_for("account.phone_page"))


@bp.post("/account/phone/send-code")
@access("patient", phi="contact")
@limiter.limit(_limit("PHONE_CODE_SEND_LIMIT"), key_func=_account_key)
def send_code():
    form = SendCodeForm()
    if not form.validate_on_submit():
        return _phone_page(422, error=_("Your form expired. Reload the page and try again."))
    try:
        phone.send_code(db.session, user=current_user, actor=actor(), now=now(),
                        ttl=_settings().PHONE_CODE_TTL, secret_key=current_app.config["SECRET_KEY"])
    except (phone.NoPhone, phone.AlreadyVerified) as problem:
        db.session.rollback()
        return _phone_page(409, error=str(problem))
    db.session.commit()
    minutes = int(_settings().PHONE_CODE_TTL.total_seconds() // 60)
    flash(_("We texted a 6-digit code to your number. It works for %(minutes)s minutes.", minutes=minutes), "success")
    return redirect_htmx(url_for("account.phone_page"))


@bp.post("/account/phone/verify")
@access("patient", phi="contact")
@limiter.limit(_limit("PHONE_VERIFY_LIMIT"), key_func=_account_key)
def verify_phone():
    form = CodeForm()
    if not form.validate_on_submit():
        return _phone_page(422, code_form=form)
    result = phone.check_code(db.session, user=current_user, code=form.code.data, actor=actor(), now=now(),
                              secret_key=current_app.config["SECRET_KEY"])
    db.session.commit()              # a wrong try counts, so it is stored too
    if result.ok:
        flash(str(result.message), "success")
        return redirect_htmx(url_for("account.phone_page"))
    return _phone_page(422, code_form=form, error=str(result.message))


# -- password reset ------------------------------------------------------------------------------------

@bp.route("/password/forgot", methods=["GET", "POST"])
@access(PUBLIC, phi=False)
@limiter.limit(_limit("PASSWORD_RESET_LIMIT_PER_EMAIL"), key_func=_reset_email_key, methods=["POST"])
@limiter.limit(_limit("PASSWORD_RESET_LIMIT_PER_ADDRESS"), methods=["POST"])
def forgot_password():
    form = ForgotForm()
    if form.validate_on_submit():
        passwords.request_reset(db.session, email=form.email.data, now=now(), ttl=_settings().PASSWORD_RESET_TTL,
                                secret_key=current_app.config["SECRET_KEY"],
                                base_url=_settings().PUBLIC_BASE_URL, actor=Actor.of(current_user))
        db.session.commit()
        # The same answer whether or not the account exists.
        return render("account/forgot.html", block="form", form=form, sent=True)
    status = 422 if form.is_submitted() else 200
    return render("account/forgot.html", block="form", form=form, sent=False, status=status)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@access(PUBLIC, phi=False)
def reset_password(token: str):
    secret = current_app.config["SECRET_KEY"]
    try:
        passwords.load(db.session, token, secret_key=secret, now=now())    # looks only: GET never uses it
    except passwords.LinkProblem as problem:
        db.session.rollback()
        return _link_problem(problem)
    form = ResetForm()
    if not form.validate_on_submit():
        status = 422 if form.is_submitted() else 200
        return render("account/reset.html", block="form", form=form, token=token, status=status)
    try:
        user = passwords.reset_password(db.session, signed=token, password=form.password.data, secret_key=secret,
                                        now=now(), actor=Actor.of(current_user))
    except passwords.LinkProblem as problem:       # used by a parallel request a moment ago
        db.session.rollback()
        return _link_problem(problem)
    except ValueError as error:
        db.session.rollback()
        form.password.errors = [*form.password.errors, str(error)]
        return render("account/reset.html", block="form", form=form, token=token, status=422)
    # Every sign-in of the account ends with the old password (a stolen cookie too).
    server_sessions.revoke_all(db.session, user_id=user.id, actor=Actor.of(current_user), reason="password_reset")
    db.session.commit()
    flash(_("Your password is changed. Sign in with the new one."), "success")
    return redirect_htmx(url_for("auth.login"))


def _link_problem(problem: passwords.LinkProblem):
    if request.method == "POST" and is_htmx():       # htmx swaps no 4xx: let the browser open the page
        response = make_response("", 200)
        response.headers["HX-Redirect"] = request.path
        return response
    status = 400 if problem.reason == "tampered" else 410
    return render("account/reset_problem.html", status=status, message=str(problem),
                  form=ForgotForm(formdata=None), sent=False)
