"""Sign up, sign in, sign out."""
from __future__ import annotations

from urllib.parse import urlsplit

import time

from flask import Blueprint, current_app, flash, request, session, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from app import i18n
from app.access import AUTHENTICATED, PUBLIC, access
from app.blueprints.forms import password_check, phone_check, timezone_check
from app.extensions import db, limiter
from app.models import User
from app.services import accounts, mfa, sessions
from app.services.audit import Actor, record
from app.blueprints.stepup import current_session
from app.web import now, redirect_htmx, render

bp = Blueprint("auth", __name__)


class SignupForm(FlaskForm):
    full_name = StringField(_l("Full name"), validators=[DataRequired(_l("Enter your name.")), Length(max=120)])
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email.")),
                                                Email(_l("Enter an email like name@example.com.")),
                                                Length(max=254)])
    phone = StringField(_l("Mobile phone"), validators=[DataRequired(_l("Enter your mobile number.")), phone_check])
    timezone = StringField(_l("Timezone"), default="UTC",
                           validators=[DataRequired(_l("Choose your timezone.")), timezone_check])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Choose a password.")), password_check])
    confirm = PasswordField(_l("Repeat password"),
                            validators=[DataRequired(_l("Repeat the password.")),
                                        EqualTo("password", _l("The passwords do not match."))])


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(_l("Enter your email."))])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password."))])
    remember = BooleanField(_l("Keep me signed in on this device for 30 days (patients)"), default=False)


class CodeForm(FlaskForm):
    code = StringField(_l("Code"), validators=[DataRequired(_l("Enter the 6-digit code from your authenticator app.")),
                                               Length(max=32, message=_l("Enter the 6-digit code or a recovery code."))])


def _settings():
    return current_app.config["SETTINGS"]


def _account_key() -> str:
    return "login-account:" + accounts.normalize_email(request.form.get("email", ""))


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _sign_in(user, *, remember: bool = False, mfa_verified: bool = False) -> None:
    """Finish a sign-in: a server-side session row (its token in a fresh cookie session) and
    Flask-Login's user. ``remember`` (patients only) keeps the cookie after the browser closes and
    gives the row SESSION_LIFETIME_REMEMBER."""
    token = sessions.start(db.session, user=user,
                           lifetime=sessions.lifetime_for(_settings(), user, remember=remember),
                           remember=remember, mfa_verified_at=now() if mfa_verified else None)
    db.session.commit()
    session.clear()
    session["sid"] = token
    session.permanent = remember
    login_user(user)


def home_for(user) -> str:
    return url_for({"patient": "home.patient", "provider": "home.provider",
                    "billing": "home.billing", "admin": "admin.home"}[user.role])


SIGNUP_DONE = _l("Thanks for signing up. We sent an email to the address you gave. "
                 "Sign in below with that email and your password to continue.")


@bp.route("/signup", methods=["GET", "POST"])
@access(PUBLIC, phi=False)
@limiter.limit(lambda: _settings().SIGNUP_LIMIT_PER_ADDRESS, methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect_htmx(home_for(current_user))
    form = SignupForm()
    if form.validate_on_submit():
        from sqlalchemy.exc import IntegrityError

        from app.web import now

        # The same answer whether or not the email already has an account (no account
        # enumeration): the owner of a taken email gets a "someone tried" email instead, and no
        # one is signed in here; the new patient signs in on the next page.
        def sign_up():
            accounts.sign_up_patient(
                db.session, full_name=form.full_name.data, email=form.email.data,
                phone=form.phone.data, timezone_name=form.timezone.data,
                password=form.password.data, actor=Actor("anonymous"), now=now(),
                locale=i18n.page_locale())     # the language they signed up in: their messages' too
        try:
            try:
                sign_up()
            except IntegrityError:             # a parallel sign-up took the email a moment ago:
                db.session.rollback()          # now it is a taken email, answered the same way
                sign_up()
        except ValueError as refused:          # the password policy, checked again by the service
            db.session.rollback()
            form.password.errors = [*form.password.errors, str(refused)]
        else:
            db.session.commit()                # after it, the email is handed to the queue
            flash(str(SIGNUP_DONE), "success")
            return redirect_htmx(url_for("auth.login"))
    status = 422 if form.is_submitted() else 200
    return render("auth/signup.html", block="form", form=form, status=status)


@bp.route("/login", methods=["GET", "POST"])
@access(PUBLIC, phi=False)
@limiter.limit(lambda: _settings().LOGIN_LIMIT_PER_ACCOUNT, key_func=_account_key, methods=["POST"])
@limiter.limit(lambda: _settings().LOGIN_LIMIT_PER_ADDRESS, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect_htmx(home_for(current_user))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = accounts.authenticate(db.session, email=form.email.data, password=form.password.data)
        db.session.commit()   # the audit row of the attempt, success or not
        if user is not None:
            target = _safe_next(request.args.get("next"))
            remember = bool(form.remember.data) and not user.is_staff
            session.clear()   # a fresh session on sign-in
            if user.mfa_enrolled:
                # Half signed in: the password was right; the code page finishes the sign-in.
                session["mfa_pending"] = {"uid": user.id, "at": time.time(), "next": target,
                                          "remember": remember}
                return redirect_htmx(url_for("auth.login_mfa"))
            _sign_in(user, remember=remember, mfa_verified=False)
            if user.is_staff:      # not enrolled: the enrolment page first (the gate holds them there)
                return redirect_htmx(url_for("auth.mfa_setup"))
            return redirect_htmx(target or home_for(user))
        error = _("That email and password do not match an account.")
    status = 422 if form.is_submitted() else 200
    return render("auth/login.html", block="form", form=form, error=error, status=status)


def sign_out(*, action: str, reason: str, message: str) -> None:
    """End this browser's sign-in: audited, its server-side session revoked (a copy of the old
    cookie is void), committed, then the cookie session cleared. Sign-out and the idle logoff."""
    record(db.session, actor=Actor.of(current_user), action=action, subject_user_id=current_user.id)
    sessions.revoke(db.session, token=session.get("sid"), reason=reason)
    db.session.commit()
    logout_user()
    session.clear()
    flash(message, "info")


@bp.post("/logout")
@access(AUTHENTICATED, phi=False)
def logout():
    sign_out(action="auth.logout", reason="signed_out", message=_("You are signed out."))
    return redirect_htmx(url_for("auth.login"))


# -- second factor: the sign-in step, enrolment, step-up --------------------------------------------------

def _pending() -> dict | None:
    """The half-signed-in state (password right, code not yet given), if still fresh."""
    pending = session.get("mfa_pending")
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > _settings().MFA_PENDING_TTL.total_seconds():
        session.pop("mfa_pending", None)
        return None
    return pending


def _mfa_key() -> str:
    pending = session.get("mfa_pending")
    uid = pending.get("uid") if isinstance(pending, dict) else current_user.get_id()
    return f"mfa-account:{uid}"


@bp.route("/login/mfa", methods=["GET", "POST"])
@access(PUBLIC, phi=False)
@limiter.limit(lambda: _settings().MFA_LIMIT_PER_ACCOUNT, key_func=_mfa_key, methods=["POST"])
def login_mfa():
    if current_user.is_authenticated:
        return redirect_htmx(home_for(current_user))
    pending = _pending()
    user = db.session.get(User, int(pending["uid"])) if pending else None
    if user is None or not user.is_active_account or not user.mfa_enrolled:
        session.pop("mfa_pending", None)
        flash(_("Your sign-in timed out. Sign in again."), "info")
        return redirect_htmx(url_for("auth.login"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        check = mfa.verify(db.session, user=user, code=form.code.data, at=now(), actor=Actor.of(user))
        db.session.commit()                 # the audit row (and the used code), right or wrong
        if check.ok:
            _sign_in(user, remember=bool(pending.get("remember")) and not user.is_staff, mfa_verified=True)
            if check.method == "recovery":
                flash(_("You used a recovery code; %(left)s left. If you lost your "
                        "authenticator, ask an admin to reset it.", left=check.recovery_left), "info")
            return redirect_htmx(_safe_next(pending.get("next")) or home_for(user))
        error = _("That code is not right. Enter the 6 digits your authenticator app shows now, or a recovery code.")
    status = 422 if form.is_submitted() else 200
    return render("auth/login_mfa.html", block="form", form=form, error=error, status=status)


def _setup_page(form, *, status=200, error=None):
    user = current_user
    secret = session.get("mfa_setup_secret")
    if not secret:
        secret = session["mfa_setup_secret"] = mfa.new_secret()
    uri = mfa.provisioning_uri(secret, email=user.email, issuer=_issuer())
    return render("account/mfa_setup.html", block="panel", status=status, form=form, error=error,
                  secret=secret, qr=mfa.qr_svg(uri), codes=None, enrolled=False)


def _issuer() -> str:
    from app.services.clinic import current_clinic

    return current_clinic(db.session).name or "Clinic Portal"


@bp.route("/account/mfa", methods=["GET", "POST"])
@access(AUTHENTICATED, phi=False)
@limiter.limit(lambda: _settings().MFA_LIMIT_PER_ACCOUNT, key_func=_mfa_key, methods=["POST"])
def mfa_setup():
    """Enrol an authenticator (staff must; patients may): the QR code and its secret, a code to
    confirm, then the recovery codes, shown once."""
    if current_user.mfa_enrolled:
        if request.method == "POST":
            return redirect_htmx(url_for("auth.mfa_setup"))
        return render("account/mfa_setup.html", form=None, error=None, secret=None, qr=None, codes=None,
                      enrolled=True, left=mfa.recovery_codes_left(db.session, current_user))
    form = CodeForm()
    if not form.validate_on_submit():
        return _setup_page(form, status=422 if form.is_submitted() else 200)
    secret = session.get("mfa_setup_secret")
    if not secret:                        # the page's secret is gone (a new browser session): start over
        return _setup_page(CodeForm(formdata=None), status=422,
                           error=_("This set-up page expired. Scan the new code below and try again."))
    user = db.session.get(User, current_user.id)
    try:
        codes = mfa.enrol(db.session, user=user, secret=secret, code=form.code.data, at=now(),
                          actor=Actor.of(current_user))
    except mfa.WrongCode as wrong:
        db.session.commit()               # the failed attempt's audit row
        return _setup_page(form, status=422, error=str(wrong))
    row = current_session()
    if row is not None:
        sessions.mark_mfa(row, at=now())
    db.session.commit()
    session.pop("mfa_setup_secret", None)
    return render("account/mfa_setup.html", block="panel", form=None, error=None, secret=None, qr=None,
                  codes=codes, enrolled=True)


@bp.route("/mfa/step-up", methods=["GET", "POST"])
@access(AUTHENTICATED, phi=False)
@limiter.limit(lambda: _settings().MFA_LIMIT_PER_ACCOUNT, key_func=_mfa_key, methods=["POST"])
def step_up():
    """Prove the second factor again for a sensitive action (app/blueprints/stepup.py), then go
    back to the page the action was on."""
    target = _safe_next(request.values.get("next")) or home_for(current_user)
    enrolled = current_user.mfa_enrolled
    form = CodeForm()
    error = None
    if enrolled and form.validate_on_submit():
        user = db.session.get(User, current_user.id)
        check = mfa.verify(db.session, user=user, code=form.code.data, at=now(), actor=Actor.of(current_user),
                           purpose="step_up")
        row = current_session()
        if check.ok and row is not None:
            sessions.mark_mfa(row, at=now())
        db.session.commit()
        if check.ok:
            flash(_("Code accepted. You can continue."), "success")
            return redirect_htmx(target)
        error = _("That code is not right. Enter the 6 digits your authenticator app shows now.")
    status = 422 if form.is_submitted() else 200
    return render("auth/step_up.html", block="form", form=form, next=target, enrolled=enrolled,
                  error=error, status=status)
