"""The admin's pages: staff accounts and the clinic's settings."""
from flask import Blueprint, flash, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice
from wtforms import EmailField, PasswordField, SelectField, StringField, ValidationError
from wtforms.validators import DataRequired, Email, Length, Optional

from app.access import access
from app.blueprints.forms import npi_check, password_check, phone_check, timezone_check, tin_check
from app.extensions import db
from app.models import User
from app.models.user import STAFF_ROLES
from app.services import accounts, clinic as clinic_service, staffing, type_settings
from app.services.audit import Actor
from app.web import redirect_htmx, render

bp = Blueprint("admin", __name__, url_prefix="/admin")


class StaffForm(FlaskForm):
    full_name = StringField("Full name", validators=[DataRequired("Enter a name."), Length(max=120)])
    email = EmailField("Email", validators=[DataRequired("Enter an email."), Email("Enter a valid email.")])
    role = SelectField("Role", choices=[SelectChoice(r, r.title()) for r in STAFF_ROLES])
    phone = StringField("Phone", validators=[Optional(), phone_check])
    timezone = StringField("Timezone", default="UTC", validators=[DataRequired(), timezone_check])
    password = PasswordField("Initial password", validators=[DataRequired("Choose a password."), password_check])


class ClinicForm(FlaskForm):
    name = StringField("Clinic name", validators=[DataRequired("Enter the clinic's name."), Length(max=120)])
    phone = StringField("Call-back phone", validators=[DataRequired("Enter a phone number."), phone_check])
    address = StringField("Address", validators=[Optional(), Length(max=255)])
    timezone = StringField("Timezone", validators=[DataRequired(), timezone_check])
    npi = StringField("Clinic NPI", validators=[npi_check])
    tax_id = StringField("Tax id (TIN)", validators=[tin_check])
    # The platform's default fee on a paid visit (issue 16), when the visit's type has none of its own.
    platform_fee_percent = StringField("Default platform fee (percent)", validators=[Length(max=40)])
    platform_fee_fixed = StringField("Default platform fee (fixed, USD)", validators=[Length(max=40)])

    platform_fee_percent_bp: int | None = None
    platform_fee_fixed_cents: int | None = None

    def validate_platform_fee_percent(self, field):
        self.platform_fee_percent_bp = _clinic_fee(type_settings.parse_fee_percent, field,
                                                   "Enter a percentage from 0 to 100 (0 for none).")

    def validate_platform_fee_fixed(self, field):
        self.platform_fee_fixed_cents = _clinic_fee(type_settings.parse_fee_fixed, field,
                                                    "Enter an amount in dollars (0 for none).")


def _clinic_fee(parse, field, blank: str) -> int | None:
    """A default fee field: None when the form did not send it (left as it is), else its value;
    empty is refused (the clinic always has a default)."""
    if not field.raw_data:
        return None
    try:
        value = parse(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    if value is None:
        raise ValidationError(blank)
    return value


@bp.get("/")
@access("admin", phi=False)
def home():
    from app.services import waitlist

    return render("admin/home.html", waitlist_refilled=waitlist.refilled_count(db.session))


@bp.route("/staff", methods=["GET", "POST"])
@access("admin", phi=False)
def staff():
    form = StaffForm()
    status = 200
    if form.validate_on_submit():
        try:
            accounts.create_staff(db.session, actor=Actor.of(current_user),
                                  full_name=form.full_name.data, email=form.email.data,
                                  role=form.role.data, timezone_name=form.timezone.data,
                                  password=form.password.data, phone=form.phone.data or None)
        except accounts.EmailTaken as taken:
            db.session.rollback()
            form.email.errors.append(str(taken))
            status = 422
        except ValueError as refused:           # the password policy, checked again by the service
            db.session.rollback()
            form.password.errors = [*form.password.errors, str(refused)]
            status = 422
        else:
            db.session.commit()
            flash("Staff account created.", "success")
            return redirect_htmx(url_for("admin.staff"))
    elif form.is_submitted():
        status = 422
    members = db.session.scalars(
        select(User).where(User.role.in_(STAFF_ROLES)).order_by(User.role, User.full_name)).all()
    return render("admin/staff.html", block="form", form=form, members=members, status=status)


@bp.route("/clinic", methods=["GET", "POST"])
@access("admin", phi=False)
def clinic():
    current = clinic_service.current_clinic(db.session)
    form = ClinicForm(obj=current)
    if not form.is_submitted():
        form.platform_fee_percent.data = type_settings.fee_percent_text(current.platform_fee_percent_bp)
        form.platform_fee_fixed.data = staffing.cents_to_dollars(current.platform_fee_fixed_cents)
    if form.validate_on_submit():
        fee = {name: value for name, value in (("platform_fee_percent_bp", form.platform_fee_percent_bp),
                                               ("platform_fee_fixed_cents", form.platform_fee_fixed_cents))
               if value is not None}                     # a field the form did not send: left as it is
        clinic_service.update_clinic(db.session, actor=Actor.of(current_user), name=form.name.data,
                                     phone=form.phone.data, address=form.address.data or "",
                                     timezone=form.timezone.data, npi=form.npi.data, tax_id=form.tax_id.data,
                                     **fee)
        db.session.commit()
        flash("Clinic settings saved.", "success")
        return redirect_htmx(url_for("admin.clinic"))
    status = 422 if form.is_submitted() else 200
    return render("admin/clinic.html", block="form", form=form, status=status)


from app.blueprints.admin import access as _access_review  # noqa: E402,F401  (routes on bp)
from app.blueprints.admin import fees as _fees  # noqa: E402,F401  (routes on bp)
from app.blueprints.admin import payouts as _payouts  # noqa: E402,F401  (routes on bp)
from app.blueprints.admin import ledger as _ledger  # noqa: E402,F401  (routes on bp)
from app.blueprints.admin import fhir_clients as _fhir_clients  # noqa: E402,F401  (routes on bp; issue 17)


# -- sessions and two-step sign-in of an account -----------------------------------------------------

class ConfirmForm(FlaskForm):
    pass


def _user_or_404(user_id: int) -> User:
    from flask import abort

    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/users/<int:user_id>/sessions/revoke")
@access("admin", phi=False)
def revoke_sessions(user_id: int):
    """Sign the account out everywhere (a lost laptop, a departing employee); audited."""
    from app.services import sessions

    user = _user_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        flash("Your form expired. Reload the page and try again.", "error")
        return redirect_htmx(url_for("admin.staff"))
    count = sessions.revoke_all(db.session, user_id=user.id, actor=Actor.of(current_user), reason="admin")
    db.session.commit()
    flash(f"Signed out of {count} session{'' if count == 1 else 's'}.", "success")
    return redirect_htmx(url_for("admin.staff"))


@bp.post("/users/<int:user_id>/mfa/reset")
@access("admin", phi=False)
def reset_mfa(user_id: int):
    """Remove an account's authenticator (a lost phone): its sessions end, and a staff member
    enrols again at the next sign-in; audited."""
    from app.services import mfa

    user = _user_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        flash("Your form expired. Reload the page and try again.", "error")
        return redirect_htmx(url_for("admin.staff"))
    mfa.reset(db.session, user=user, actor=Actor.of(current_user))
    db.session.commit()
    flash("Two-step sign-in reset. The account enrols again at its next sign-in.", "success")
    return redirect_htmx(url_for("admin.staff"))

