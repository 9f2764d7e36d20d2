"""Column helpers shared by the models."""
import operator
from datetime import datetime, timezone

from sqlalchemy import DateTime, Text, func
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def created_at_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


# Comparisons that would compare a randomized ciphertext with a freshly encrypted literal: never
# true, so refused at once (search by the column's *_hash beside it instead).
_REFUSED_OPERATORS = {
    operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
    operators.in_op, operators.not_in_op, operators.like_op, operators.not_like_op,
    operators.ilike_op, operators.not_ilike_op, operators.contains_op, operators.startswith_op,
    operators.endswith_op, operators.between_op, operators.match_op,
}


class EncryptedText(TypeDecorator):
    """A PHI column encrypted at rest (app/services/field_crypto.py): the model reads and writes
    plaintext, the database holds ``v1:<key id>:<AES-GCM>``, bound to ``context`` (the column's
    ``"table.column"``) so a value cannot be moved to another column. Legacy plaintext values
    read as they are. Every new PHI column uses it, e.g.::

        date_of_birth: Mapped[str | None] = mapped_column(EncryptedText("patients.date_of_birth"))

    Values cannot be compared in SQL (each encryption differs): a column people look up by gets a
    keyed hash beside it (``field_crypto.lookup_hash``), like ``users.phone_hash``.
    """
    impl = Text
    cache_ok = True

    def __init__(self, context: str):
        super().__init__()
        self.context = context

    class Comparator(TypeDecorator.Comparator):
        def operate(self, op, *other, **kwargs):
            # A Python value (to be encrypted anew) is refused; None (IS NULL) and other columns pass
            # (SQLAlchemy itself compares columns, e.g. to find a column's attribute).
            if op in _REFUSED_OPERATORS and any(
                    value is not None and not isinstance(value, ClauseElement) and not hasattr(value, "__clause_element__")
                    for value in other):
                raise TypeError(f"{self.type.context} is encrypted: compare by its look-up hash instead")
            return super().operate(op, *other, **kwargs)

    comparator_factory = Comparator

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        from app.services import field_crypto

        return field_crypto.encrypt(str(value), context=self.context)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        from app.services import field_crypto

        return field_crypto.decrypt(value, context=self.context)

    def copy(self, **kwargs):
        return EncryptedText(self.context)

    def __repr__(self) -> str:
        return f"EncryptedText({self.context!r})"
