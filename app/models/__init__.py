"""Tables, constraints and state machines; one module per aggregate."""
from app.models.appointment import Appointment, ProviderAlert
from app.models.audit import AuditEvent
from app.models.billing import BillingCode, FeeScheduleEntry
from app.models.claims import Claim, ClearinghouseCursor, Reconciliation, Remittance
from app.models.clinic import ClinicSettings
from app.models.insurance import (Coverage, EligibilityCheck, Estimate, Intake, IntakeConsent, Payer,
                                   PayerAllowedAmount)
from app.models.emr import Addendum, Encounter, EncounterDiagnosis, EncounterLine
from app.models.notification import LinkToken, Notification, PhoneVerification, SmsOptOut
from app.models.postvisit import CardSetup, CollectionCase, PaymentConsent
from app.models.disputes import Dispute
from app.models.ledger import LedgerEntry, LedgerReconciliation, LedgerTransaction
from app.models.payouts import PayoutSplit, ProviderAccount, ProviderPayout, ProviderTransfer, TransferReversal
from app.models.payment import Charge, PaymentAttempt, PaymentFailure, Refund, StripeEvent
from app.models.scheduling import (AppointmentType, AvailabilityException, AvailabilityRule, Provider,
                                   Specialty)
from app.models.user import Patient, User, ROLES, STAFF_ROLES
from app.models.security import RecoveryCode, UserSession
from app.models.waitlist import WaitlistEntry, WaitlistOffer
from app.models.fhir import FhirClient, FhirExport, FhirExportFile, FhirToken

__all__ = ["Claim", "ClearinghouseCursor", "Reconciliation", "Remittance", "Coverage", "EligibilityCheck",
           "Estimate", "Intake", "IntakeConsent", "Payer", "PayerAllowedAmount", "Addendum", "CardSetup", "CollectionCase", "Encounter", "EncounterDiagnosis", "EncounterLine",
           "PaymentConsent", "ProviderAccount", "PayoutSplit", "ProviderPayout", "ProviderTransfer", "TransferReversal",
           "Dispute", "LedgerEntry", "LedgerReconciliation", "LedgerTransaction", "Appointment", "AppointmentType", "AuditEvent", "BillingCode", "FeeScheduleEntry", "Charge", "PaymentAttempt", "PaymentFailure",
           "StripeEvent", "ProviderAlert", "Refund", "LinkToken", "Notification", "PhoneVerification", "SmsOptOut", "AvailabilityException", "AvailabilityRule",
           "ClinicSettings", "FhirClient", "FhirExport", "FhirExportFile", "FhirToken", "Patient", "RecoveryCode", "UserSession", "Provider", "Specialty", "User", "WaitlistEntry", "WaitlistOffer", "ROLES", "STAFF_ROLES"]
