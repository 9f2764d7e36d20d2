"""Tables, constraints and state machines; one module per aggregate."""
from app.models.audit import AuditEvent
from app.models.clinic import ClinicSettings
from app.models.user import Patient, User, ROLES, STAFF_ROLES

__all__ = ["AuditEvent", "ClinicSettings", "Patient", "User", "ROLES", "STAFF_ROLES"]
