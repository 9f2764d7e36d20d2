"""Admin: appointment types, provider profiles and specialties."""
from flask import abort, flash, url_for
from wtforms.fields.choices import SelectChoice

from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.forms import ProviderForm, SpecialtyForm, TypeForm
from app.extensions import db
from app.models import AppointmentType, Provider
from app.services import staffing, type_settings
from app.web import actor, redirect_htmx, render


# -- appointment types ----------------------------------------------------------------------

@bp.get("/types")
@access("admin", phi=False)
def types():
    return render("staff/types.html", types=staffing.appointment_types(db.session))


def _type_values(form: TypeForm) -> dict:
    return dict(name=form.name.data, duration_minutes=form.duration_minutes.data,
                buffer_before_minutes=form.buffer_before_minutes.data,
                buffer_after_minutes=form.buffer_after_minutes.data, price_cents=form.price_cents,
                payment_timing=form.payment_timing.data, modality=form.modality.data,
                min_notice_minutes=form.min_notice_minutes.data, horizon_days=form.horizon_days.data,
                cancellation_window_hours=form.cancellation_window_hours.data,
                slot_interval_minutes=form.slot_interval_minutes.data, is_active=form.is_active.data)


def _settings_values(form: TypeForm) -> dict:
    """Insurance, intake and deposit settings (issue 15, app/services/type_settings.py)."""
    return dict(expected_codes_text=form.expected_codes_text.data or "",
                intake_questions_text=form.intake_questions_text.data or "",
                intake_required=form.intake_required.data or [], deposit_rule=form.deposit_rule.data,
                deposit_percent=form.deposit_percent.data, deposit_fixed_cents=form.deposit_fixed_cents,
                deposit_cap_cents=form.deposit_cap_cents)


def _type_form_page(form: TypeForm, appointment_type: AppointmentType | None):
    status = 200
    if form.validate_on_submit():
        try:
            saved = staffing.save_type(db.session, actor=actor(), appointment_type=appointment_type,
                                       **_type_values(form))
            type_settings.save(db.session, saved, actor=actor(), **_settings_values(form))
            if form.platform_fee_percent.raw_data or form.platform_fee_fixed.raw_data:   # not posted: unchanged
                type_settings.save_platform_fee(db.session, saved, actor=actor(),
                                                percent_bp=form.platform_fee_percent_bp,
                                                fixed_cents=form.platform_fee_fixed_cents)
        except staffing.StaffingError as error:
            db.session.rollback()
            getattr(form, error.field or "name").errors.append(str(error))
            status = 422
        else:
            db.session.commit()
            flash(f"Visit type “{saved.name}” saved.", "success")
            return redirect_htmx(url_for("staff.types"))
    elif form.is_submitted():
        status = 422
    return render("staff/type_form.html", block="form", form=form, appointment_type=appointment_type,
                  status=status, clinic_fee=_clinic_fee_words())


def _clinic_fee_words() -> str:
    """The clinic's default platform fee in words, for the type form's hint (issue 16)."""
    from app.services import clinic as clinic_service

    current = clinic_service.current_clinic(db.session)
    return type_settings.fee_words(current.platform_fee_percent_bp, current.platform_fee_fixed_cents)


@bp.route("/types/new", methods=["GET", "POST"])
@access("admin", phi=False)
def new_type():
    return _type_form_page(TypeForm(), None)


@bp.route("/types/<int:type_id>", methods=["GET", "POST"])
@access("admin", phi=False)
def edit_type(type_id: int):
    appointment_type = db.session.get(AppointmentType, type_id) or abort(404)
    form = TypeForm(obj=appointment_type)
    if not form.is_submitted():
        form.price.data = staffing.cents_to_dollars(appointment_type.price_cents)
        form.expected_codes_text.data = type_settings.codes_text(appointment_type.expected_codes)
        form.intake_questions_text.data = type_settings.questions_text(appointment_type.intake_questions)
        form.deposit_fixed.data = staffing.cents_to_dollars(appointment_type.deposit_fixed_cents)
        form.deposit_cap.data = staffing.cents_to_dollars(appointment_type.deposit_cap_cents)
        form.platform_fee_percent.data = type_settings.fee_percent_text(appointment_type.platform_fee_percent_bp)
        form.platform_fee_fixed.data = staffing.cents_to_dollars(appointment_type.platform_fee_fixed_cents)
    return _type_form_page(form, appointment_type)


# -- provider profiles ----------------------------------------------------------------------

@bp.get("/providers")
@access("admin", phi=False)
def providers():
    return render("staff/providers.html", providers=staffing.providers(db.session),
                  without_profile=staffing.users_without_profile(db.session))


def _provider_form(*, obj=None, creating: bool) -> ProviderForm:
    form = ProviderForm(obj=obj)
    if creating:
        form.user_id.choices = [SelectChoice(u.id, f"{u.full_name} ({u.email})")
                                for u in staffing.users_without_profile(db.session)]
    else:
        del form.user_id
    form.specialty_id.choices = [SelectChoice(s.id, s.name) for s in staffing.specialties(db.session)]
    form.type_ids.choices = [SelectChoice(t.id, f"{t.name}{'' if t.is_active else ' (inactive)'}")
                             for t in staffing.appointment_types(db.session)]
    if obj is not None and not form.is_submitted():
        form.type_ids.data = [t.id for t in obj.types]
    return form


def _place(form: ProviderForm, error: staffing.StaffingError) -> None:
    field = getattr(form, error.field or "", None) or form.specialty_id
    field.errors = list(field.errors) + [str(error)]


@bp.route("/providers/new", methods=["GET", "POST"])
@access("admin", phi=False)
def new_provider():
    form = _provider_form(creating=True)
    return _provider_form_page(form, None, lambda: staffing.create_provider(
        db.session, actor=actor(), user_id=form.user_id.data, **_provider_values(form)),
        "Provider profile created.")


@bp.route("/providers/<int:provider_id>", methods=["GET", "POST"])
@access("admin", phi=False)
def edit_provider(provider_id: int):
    provider = db.session.get(Provider, provider_id) or abort(404)
    form = _provider_form(obj=provider, creating=False)
    return _provider_form_page(form, provider, lambda: staffing.update_provider(
        db.session, provider, actor=actor(), is_active=form.is_active.data, **_provider_values(form)),
        "Provider profile saved.")


def _provider_values(form: ProviderForm) -> dict:
    return dict(specialty_id=form.specialty_id.data, timezone_name=form.timezone.data, bio=form.bio.data or "",
                offers_telehealth=form.offers_telehealth.data, offers_in_person=form.offers_in_person.data,
                type_ids=form.type_ids.data or [], npi=form.npi.data)


def _provider_form_page(form: ProviderForm, provider: Provider | None, save, done: str):
    """Validate, save through the service, commit once; errors next to their fields (422)."""
    status = 200
    if form.validate_on_submit():
        try:
            save()
        except staffing.StaffingError as error:
            db.session.rollback()
            _place(form, error)
            status = 422
        else:
            db.session.commit()
            flash(done, "success")
            return redirect_htmx(url_for("staff.providers"))
    elif form.is_submitted():
        status = 422
    return render("staff/provider_form.html", block="form", form=form, provider=provider, status=status)


# -- specialties ----------------------------------------------------------------------------

@bp.route("/specialties", methods=["GET", "POST"])
@access("admin", phi=False)
def specialties():
    form = SpecialtyForm()
    status = 200
    if form.validate_on_submit():
        try:
            staffing.add_specialty(db.session, actor=actor(), name=form.name.data,
                                   is_sensitive=form.is_sensitive.data)
        except staffing.StaffingError as error:
            db.session.rollback()
            form.name.errors.append(str(error))
            status = 422
        else:
            db.session.commit()
            flash("Specialty added.", "success")
            return redirect_htmx(url_for("staff.specialties"))
    elif form.is_submitted():
        status = 422
    return render("staff/specialties.html", block="form", form=form,
                  specialties=staffing.specialties(db.session), status=status)
