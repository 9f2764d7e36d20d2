"""Forms of the staff pages; choices that come from the database are set by the view."""
from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateTimeLocalField, IntegerField, SelectField, SelectMultipleField,
                     StringField, TextAreaField, TimeField, ValidationError)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.blueprints.forms import at_most, date_in_range, npi_check, timezone_check
from app.models.scheduling import EXCEPTION_REASONS
from app.services.staffing import WEEKDAYS, dollars_to_cents

TIMINGS = [SelectChoice("deposit_to_book", "Deposit to book (pay in full when booking)"),
           SelectChoice("post_visit", "Post-visit (card saved, charged after the visit)"),
           SelectChoice("hybrid", "Hybrid (deposit now, balance after insurance)")]
MODALITY_CHOICES = [SelectChoice("telehealth", "Telehealth"), SelectChoice("in_person", "In person")]
REASONS = [SelectChoice(r, r.title()) for r in EXCEPTION_REASONS]
DEPOSIT_RULE_CHOICES = [SelectChoice("estimate", "The estimated patient share"),
                        SelectChoice("copay", "The copay"),
                        SelectChoice("percent", "A percentage of the estimated share"),
                        SelectChoice("fixed", "A fixed amount")]
from app.services.type_settings import SECTION_LABELS as _SECTION_LABELS  # noqa: E402
from app.services.type_settings import parse_fee_fixed, parse_fee_percent  # noqa: E402


def _whole(label: str, minimum: int, message: str, maximum: int):
    return IntegerField(label, validators=[InputRequired("Enter a whole number."),
                                           NumberRange(min=minimum, message=message), at_most(maximum)])


MINUTES_A_DAY, DAYS_TEN_YEARS = 24 * 60, 3650     # bounds the schedule's date arithmetic stays well within


class RuleForm(FlaskForm):
    weekday = SelectField("Day", coerce=int, choices=[SelectChoice(i, d) for i, d in enumerate(WEEKDAYS)])
    start = TimeField("From", validators=[InputRequired("Enter a start time.")])
    end = TimeField("Until", validators=[InputRequired("Enter an end time.")])
    type_id = SelectField("Visit type", coerce=int, default=0)

    def validate_end(self, field):
        if self.start.data and field.data and field.data <= self.start.data:
            raise ValidationError("The end must be after the start.")


class ExceptionForm(FlaskForm):
    starts_local = DateTimeLocalField("Starts", format="%Y-%m-%dT%H:%M",
                                      validators=[InputRequired("Enter when the time off starts."), date_in_range])
    ends_local = DateTimeLocalField("Ends", format="%Y-%m-%dT%H:%M",
                                    validators=[InputRequired("Enter when the time off ends."), date_in_range])
    reason = SelectField("Reason", choices=REASONS)
    note = StringField("Note", validators=[Optional(), Length(max=200)])

    def validate_ends_local(self, field):
        if self.starts_local.data and field.data and field.data <= self.starts_local.data:
            raise ValidationError("The end must be after the start.")


class TypeForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=80)])
    duration_minutes = _whole("Duration (minutes)", 1, "The visit must last at least one minute.", MINUTES_A_DAY)
    buffer_before_minutes = _whole("Buffer before (minutes)", 0, "Enter 0 or more.", MINUTES_A_DAY)
    buffer_after_minutes = _whole("Buffer after (minutes)", 0, "Enter 0 or more.", MINUTES_A_DAY)
    price = StringField("Price (USD)", validators=[DataRequired("Enter a price.")])
    payment_timing = SelectField("Payment timing", choices=TIMINGS)
    modality = SelectField("Modality", choices=MODALITY_CHOICES)
    min_notice_minutes = _whole("Minimum notice (minutes)", 0, "Enter 0 or more.", DAYS_TEN_YEARS * MINUTES_A_DAY)
    horizon_days = _whole("Booking horizon (days)", 1, "Enter at least 1 day.", DAYS_TEN_YEARS)
    cancellation_window_hours = _whole("Cancellation window (hours)", 0, "Enter 0 or more.", DAYS_TEN_YEARS * 24)
    slot_interval_minutes = IntegerField("Slot interval (minutes)", validators=[
        Optional(), NumberRange(min=1, message="Enter at least 1 minute, or leave it empty."),
        at_most(MINUTES_A_DAY)])
    is_active = BooleanField("Active (patients can book it)", default=True)
    # Insurance, intake and deposit (issue 15; parsed by app/services/type_settings.py).
    expected_codes_text = TextAreaField("Expected billing codes", validators=[Optional(), Length(max=2000)])
    intake_questions_text = TextAreaField("Intake questions", validators=[Optional(), Length(max=8000)])
    intake_required = SelectMultipleField("Intake sections the patient must complete", widget=ListWidget(prefix_label=False),
                                          option_widget=CheckboxInput(), validate_choice=True,
                                          choices=[SelectChoice(k, v) for k, v in _SECTION_LABELS.items()])
    deposit_rule = SelectField("Deposit (hybrid visits)", choices=DEPOSIT_RULE_CHOICES, default="estimate")
    deposit_percent = IntegerField("Deposit percent of the estimate", validators=[
        Optional(), NumberRange(min=0, max=100, message="Enter a percentage from 0 to 100.")])
    deposit_fixed = StringField("Fixed deposit (USD)", validators=[Optional()])
    deposit_cap = StringField("Deposit cap (USD)", validators=[Optional()])
    # The platform's fee on this type's visits (issue 16): both empty = the clinic's default.
    platform_fee_percent = StringField("Platform fee (percent)", validators=[Optional(), Length(max=40)])
    platform_fee_fixed = StringField("Platform fee (fixed, USD)", validators=[Optional(), Length(max=40)])

    price_cents: int | None = None
    deposit_fixed_cents: int | None = None
    deposit_cap_cents: int | None = None
    platform_fee_percent_bp: int | None = None
    platform_fee_fixed_cents: int | None = None

    def validate_platform_fee_percent(self, field):
        self.platform_fee_percent_bp = fee_value(parse_fee_percent, field)

    def validate_platform_fee_fixed(self, field):
        self.platform_fee_fixed_cents = fee_value(parse_fee_fixed, field)

    def validate_price(self, field):
        try:
            self.price_cents = dollars_to_cents(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def validate_deposit_fixed(self, field):
        self.deposit_fixed_cents = _optional_cents(field.data)

    def validate_deposit_cap(self, field):
        self.deposit_cap_cents = _optional_cents(field.data)


def fee_value(parse, field) -> int | None:
    """A platform fee field (app/services/type_settings.py's parsers): the value, or the message."""
    try:
        return parse(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def _optional_cents(text) -> int | None:
    if not (text or "").strip():
        return None
    try:
        return dollars_to_cents(text)
    except ValueError as error:
        raise ValidationError(str(error).replace("price", "amount")) from None


class ProviderForm(FlaskForm):
    user_id = SelectField("Staff member", coerce=int)
    specialty_id = SelectField("Specialty", coerce=int)
    timezone = StringField("Timezone", validators=[DataRequired("Enter a timezone."), timezone_check])
    bio = TextAreaField("Bio", validators=[Optional(), Length(max=2000)])
    npi = StringField("NPI", validators=[npi_check])
    offers_telehealth = BooleanField("Offers telehealth", default=True)
    offers_in_person = BooleanField("Offers in-person visits", default=True)
    type_ids = SelectMultipleField("Visit types offered", coerce=int, widget=ListWidget(prefix_label=False),
                                   option_widget=CheckboxInput(), validate_choice=True)
    is_active = BooleanField("Active (shown to patients)", default=True)

    def validate_offers_in_person(self, field):
        if not (field.data or self.offers_telehealth.data):
            raise ValidationError("Offer telehealth, in-person visits, or both.")


class SpecialtyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Enter a name."), Length(max=80)])
    is_sensitive = BooleanField("Sensitive (never named in messages or payments)")


class CancelForm(FlaskForm):
    reason = TextAreaField("Reason for canceling", validators=[
        DataRequired("Give a reason for canceling."), Length(max=500)])


class BreakGlassForm(FlaskForm):
    reason = TextAreaField("Why do you need this patient's record?", validators=[
        DataRequired("Give the reason: it is kept in the audit trail and reviewed."),
        Length(min=10, max=500, message="Say why in 10 to 500 characters.")])
