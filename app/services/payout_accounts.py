"""Provider payout accounts (issue 16, first slice): Stripe Connect Express accounts.

The flow, with the caller committing between the steps (services never commit):

1. ``open_account``: the provider's ProviderAccount, or a new one in ``creating`` with its UUID: the
   caller commits it **before** Stripe hears of it (as PaymentAttempt and CardSetup are stored).
2. ``start_onboarding``: under the row's lock, create the Express account if the row has none yet
   (idempotency key ``<uuid>:create``: a retry after a crash between Stripe's answer and our commit
   gets the same account back; after a 500 the account is found by our UUID in its metadata), apply
   its first snapshot, and make an onboarding account link (links are single use and expire within
   minutes, so one is made whenever the provider asks). The caller commits, then sends the
   provider to the link.
3. The provider comes back: ``refresh_account`` re-reads the account and applies it.
   ``account.updated`` webhooks do the same (``apply_event``): the account is re-read from Stripe
   (never the event's copy), and an event older than the newest one applied is ignored.

``apply_snapshot`` is the one writer of a ProviderAccount's status and flags; it audits a change
once (a duplicate or a re-read that changes nothing writes nothing).

No PHI to Stripe: the account's metadata carries our row's UUID and the provider's id only; no
email, name or specialty (Stripe's onboarding asks the provider for what it needs).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import ConnectedAccount
from app.models import Provider, User
from app.models.payouts import ProviderAccount, derive_status
from app.services import DomainError, audit, insert_or_existing
from app.services.audit import Actor
from app.services.gateway import domain_errors, gateway

STATUS_WORDS = {
    None: "Not connected",
    "creating": "Being set up",
    "onboarding": "Onboarding not finished",
    "restricted": "Stripe needs more information",
    "enabled": "Ready to be paid",
    "disabled": "Disabled by Stripe",
}


class PayoutAccountError(DomainError):
    pass


class AccountMismatch(PayoutAccountError):
    """Stripe's account is not the one our row asked for (a bug, or someone else's account)."""


def words(status: str | None) -> str:
    return STATUS_WORDS.get(status, status or "Not connected")


def requirement_words(name: str) -> str:
    """Stripe's requirement (a field name, like ``external_account`` or ``individual.dob.day``) in words."""
    return name.replace("_", " ").replace(".", " · ")


def account_for(session: Session, provider_id: int) -> ProviderAccount | None:
    return session.scalar(select(ProviderAccount).where(ProviderAccount.provider_id == provider_id))


def account_for_stripe_id(session: Session, stripe_account_id: str | None) -> int | None:
    if not stripe_account_id:
        return None
    return session.scalar(select(ProviderAccount.id).where(ProviderAccount.stripe_account_id == stripe_account_id))


def open_account(session: Session, provider: Provider, *, actor: Actor) -> ProviderAccount:
    """The provider's account row, or a new one (``creating``, its UUID stored before any Stripe call)."""
    found = account_for(session, provider.id)
    if found is not None:
        return found
    # Another tab's row, made at the same moment, is used.
    account, inserted = insert_or_existing(session, ProviderAccount(provider_id=provider.id, status="creating",
                                                                    requirements_due=[]),
                                           lambda: account_for(session, provider.id))
    if not inserted:
        return account
    audit.record(session, actor=actor, action="payout_account.opened", subject_user_id=provider.user_id,
                 details={"provider_account_id": account.id})
    return account


def _check(account: ProviderAccount, snap: ConnectedAccount) -> None:
    if account.stripe_account_id and snap.id != account.stripe_account_id:
        raise AccountMismatch(f"account {snap.id} is not provider account {account.id}'s")
    if not account.stripe_account_id and snap.metadata.get("provider_account_uuid") != str(account.uuid):
        raise AccountMismatch(f"account {snap.id} does not carry provider account {account.id}'s uuid")


@domain_errors
def ensure_stripe_account(session: Session, account: ProviderAccount, *, actor: Actor, now: datetime
                          ) -> ProviderAccount:
    """Create the row's Express account once (idempotent on its UUID), under the row's lock."""
    if account.stripe_account_id:
        return account
    session.refresh(account, with_for_update=True)       # two tabs: the second finds the account made
    if account.stripe_account_id:
        return account
    snap = gateway().create_express_account(key=account.key("create"), metadata={
        "provider_account_uuid": str(account.uuid), "provider_id": str(account.provider_id)})
    _check(account, snap)
    account.stripe_account_id = snap.id
    provider = account.provider or session.get(Provider, account.provider_id)
    audit.record(session, actor=actor, action="payout_account.created", stripe_object_id=snap.id,
                 subject_user_id=provider.user_id if provider else None,
                 details={"provider_account_id": account.id})
    apply_snapshot(session, account, snap, actor=actor, source="create", now=now)
    return account


@domain_errors
def start_onboarding(session: Session, account: ProviderAccount, *, actor: Actor, now: datetime,
                     refresh_url: str, return_url: str) -> str:
    """The Express account (created if need be, see ``ensure_stripe_account``) and a fresh onboarding
    link's URL. The account row must have been committed before (``open_account``)."""
    if account.status == "disabled":
        raise PayoutAccountError("Stripe has disabled this payout account. Please contact the clinic.")
    ensure_stripe_account(session, account, actor=actor, now=now)
    link = gateway().create_account_link(account.stripe_account_id, refresh_url=refresh_url, return_url=return_url)
    return link.url


@domain_errors
def refresh_account(session: Session, account: ProviderAccount, *, actor: Actor, now: datetime,
                    source: str = "return") -> ProviderAccount:
    """Re-read the account from Stripe (under the row's lock) and apply it."""
    if not account.stripe_account_id:
        return account
    session.refresh(account, with_for_update=True)
    snap = gateway().retrieve_account(account.stripe_account_id)
    apply_snapshot(session, account, snap, actor=actor, source=source, now=now)
    return account


def apply_snapshot(session: Session, account: ProviderAccount, snap: ConnectedAccount, *, actor: Actor,
                   source: str, now: datetime, event_created: int | None = None) -> bool:
    """The one writer of the account's status and flags. ``event_created`` (an account.updated
    event's ``created``): an event older than the newest applied is ignored. Returns whether anything
    changed (and was audited once)."""
    _check(account, snap)
    if event_created is not None:
        if account.last_event_created is not None and event_created < account.last_event_created:
            return False
        account.last_event_created = event_created
    due = list(snap.requirements_due)
    status = derive_status(details_submitted=snap.details_submitted, charges_enabled=snap.charges_enabled,
                           payouts_enabled=snap.payouts_enabled, transfers_active=snap.transfers_active,
                           requirements_due=due, disabled_reason=snap.disabled_reason)
    new = dict(status=status, details_submitted=snap.details_submitted, charges_enabled=snap.charges_enabled,
               payouts_enabled=snap.payouts_enabled, transfers_active=snap.transfers_active,
               requirements_due=due, disabled_reason=snap.disabled_reason)
    old = {name: getattr(account, name) for name in new}
    account.synced_at = now
    if old == new:
        return False
    for name, value in new.items():
        setattr(account, name, value)
    session.flush()
    provider = account.provider or session.get(Provider, account.provider_id)
    audit.record(session, actor=actor, action="payout_account.updated", stripe_object_id=account.stripe_account_id,
                 subject_user_id=provider.user_id if provider else None,
                 details={"provider_account_id": account.id, "source": source, "from": old["status"],
                          "to": status, "requirements_due": len(due)})
    return True


@domain_errors
def apply_event(session: Session, account_id: int, *, event_created: int, actor: Actor, now: datetime) -> bool:
    """An ``account.updated`` event about one of our accounts: ignored when older than the newest
    applied; otherwise the account is re-read from Stripe (not the event's copy) and applied."""
    account = session.get(ProviderAccount, account_id, with_for_update=True, populate_existing=True)
    if account is None or not account.stripe_account_id:
        return False
    if account.last_event_created is not None and event_created < account.last_event_created:
        return False
    snap = gateway().retrieve_account(account.stripe_account_id)
    return apply_snapshot(session, account, snap, actor=actor, source="webhook", now=now,
                          event_created=event_created)


def mirrored_account_events(session: Session, rows) -> list[str]:
    """Of stored events ``(id, type, object_id, ...)``: the ids of ``account.updated`` events about an
    account of ours (webhook processing applies those one by one)."""
    wanted = {row[2] for row in rows if row[1] == "account.updated" and row[2]}
    if not wanted:
        return []
    ours = set(session.scalars(select(ProviderAccount.stripe_account_id)
                               .where(ProviderAccount.stripe_account_id.in_(list(wanted)))))
    return [row[0] for row in rows if row[1] == "account.updated" and row[2] in ours]


@dataclass(frozen=True)
class Readiness:
    provider_id: int
    name: str
    is_active: bool
    status: str | None
    ready: bool
    requirements_due: list
    stripe_account_id: str | None
    synced_at: datetime | None

    @property
    def words(self) -> str:
        return words(self.status)


def readiness(session: Session) -> list[Readiness]:
    """Every provider and whether they can be paid (an enabled account), with what Stripe still wants."""
    rows = session.execute(
        select(Provider.id, User.full_name, Provider.is_active, ProviderAccount)
        .join(User, User.id == Provider.user_id)
        .outerjoin(ProviderAccount, ProviderAccount.provider_id == Provider.id)
        .order_by(User.full_name, Provider.id)).all()
    return [Readiness(provider_id=pid, name=name, is_active=active, status=acct.status if acct else None,
                      ready=bool(acct and acct.ready), requirements_due=list(acct.requirements_due or []) if acct else [],
                      stripe_account_id=acct.stripe_account_id if acct else None,
                      synced_at=acct.synced_at if acct else None)
            for pid, name, active, acct in rows]
