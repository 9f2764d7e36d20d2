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
    try:
        accounts.check_password(field.data)
    except ValueError as error:
        raise ValidationError(str(error)) from None
