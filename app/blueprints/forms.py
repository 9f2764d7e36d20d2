"""Form fields shared by several blueprints."""
from wtforms import Field, ValidationError

from app.services import accounts


def phone_check(form, field: Field) -> None:
    try:
        field.data = accounts.normalize_phone(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def timezone_check(form, field: Field) -> None:
    try:
        accounts.check_timezone(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def password_check(form, field: Field) -> None:
    """The password policy (app/services/passwords.py). The account's email is the form's own
    ``email`` field when it has one (sign-up, staff creation), else ``form.account_email`` if the
    view set it (a reset knows whose password it is)."""
    email_field = getattr(form, "email", None)
    email = email_field.data if isinstance(email_field, Field) else getattr(form, "account_email", None)
    try:
        accounts.check_password(field.data, email=email if isinstance(email, str) else None)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def at_most(maximum: int, message: str | None = None):
    """A whole-number field's upper bound (the database column, or what the schedule can compute)."""
    def check(form, field: Field) -> None:
        if field.data is not None and field.data > maximum:
            raise ValidationError(message or f"Enter {maximum:,} or less.")
    return check


def date_in_range(form, field: Field) -> None:
    """A date or date-time field within 1900..2200 (app/input_guard.py): no date arithmetic overflows."""
    from app import input_guard

    if field.data is not None:
        try:
            input_guard.check_date(field.data)
        except input_guard.BadValue as error:
            raise ValidationError(str(error)) from None


def positive_dollars(what: str):
    """A money field typed in dollars ("25", "$1,250.50"): sets ``form.cents`` (integer cents) or
    refuses with a clear message; ``what`` names it in the refusal ("The price must be more...")."""
    def check(form, field: Field) -> None:
        from app.blueprints.billing import dollars_to_cents

        try:
            form.cents = dollars_to_cents(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        if form.cents <= 0:
            raise ValidationError(f"{what} must be more than $0.00.")
    return check


def npi_check(form, field: Field) -> None:
    """An optional NPI (10 digits with a valid check digit): stored as 10 digits, or None when empty."""
    from app.services import identifiers

    try:
        field.data = identifiers.normalize_npi(field.data)
    except identifiers.InvalidIdentifier as error:
        raise ValidationError(str(error)) from None


def tin_check(form, field: Field) -> None:
    """An optional tax id (TIN, 9 digits): stored as NN-NNNNNNN, or None when empty."""
    from app.services import identifiers

    try:
        field.data = identifiers.normalize_tin(field.data)
    except identifiers.InvalidIdentifier as error:
        raise ValidationError(str(error)) from None
