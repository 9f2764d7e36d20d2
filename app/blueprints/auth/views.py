"""Sign up, sign in, sign out."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from app.access import AUTHENTICATED, PUBLIC, access
from app.blueprints.forms import password_check, phone_check, timezone_check
from app.extensions import db, limiter
from app.services import accounts
from app.services.audit import Actor, record
from app.web import redirect_htmx, render

bp = Blueprint("auth", __name__)


class SignupForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter your name."), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired("Enter your email."),
                                            Email("Enter an email like name@example.com."),
                                            Length(max=254)])
    phone = StringField("Mobile phone", validators=[DataRequired("Enter your mobile number."), phone_check])
    timezone = StringField("Timezone", default="UTC",
                           validators=[DataRequired("Choose your timezone."), timezone_check])
    password = PasswordField("Password", validators=[DataRequired("Choose a password."), password_check])
    confirm = PasswordField("Repeat password",
                            validators=[DataRequired("Repeat the password."),
                                        EqualTo("password", "The passwords do not match.")])


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])


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


def home_for(user) -> str:
    return url_for({"patient": "home.patient", "provider": "home.provider",
                    "billing": "home.billing", "admin": "admin.home"}[user.role])


@bp.route("/signup", methods=["GET", "POST"])
@access(PUBLIC)
@limiter.limit(lambda: _settings().SIGNUP_LIMIT_PER_ADDRESS, methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect_htmx(home_for(current_user))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.register_patient(
                db.session, full_name=form.full_name.data, email=form.email.data,
                phone=form.phone.data, timezone_name=form.timezone.data,
                password=form.password.data, actor=Actor("anonymous"))
        except accounts.EmailTaken as taken:
            db.session.rollback()
            form.email.errors.append(str(taken))
        else:
            db.session.commit()
            session.clear()
            login_user(user)
            flash("Welcome! Your account is ready.", "success")
            return redirect_htmx(url_for("home.patient"))
    status = 422 if form.is_submitted() else 200
    return render("auth/signup.html", block="form", form=form, status=status)


@bp.route("/login", methods=["GET", "POST"])
@access(PUBLIC)
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
            session.clear()   # a fresh session on sign-in
            login_user(user)
            return redirect_htmx(target or home_for(user))
        error = "That email and password do not match an account."
    status = 422 if form.is_submitted() else 200
    return render("auth/login.html", block="form", form=form, error=error, status=status)


@bp.post("/logout")
@access(AUTHENTICATED)
def logout():
    record(db.session, actor=Actor.of(current_user), action="auth.logout",
           subject_user_id=current_user.id)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect_htmx(url_for("auth.login"))
