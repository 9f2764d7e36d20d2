"""Provider payout accounts, the service (issue 16): start onboarding once however often it is asked,
a crash after Stripe created the account, snapshots applied once and in order, readiness."""
from __future__ import annotations

import stripe
from sqlalchemy import func, select

from app.integrations.stripe_gateway import ConnectedAccount
from app.models import AuditEvent
from app.models.payouts import ProviderAccount
from app.services import payout_accounts
from app.services.audit import Actor
from app.services.gateway import gateway

REFRESH = "http://portal.test/staff/payouts/refresh"
RETURN = "http://portal.test/staff/payouts/return"


def actor_of(provider):
    return Actor("user", provider.user_id, "provider")


def stripe_client(sandbox):
    return stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base})


def accounts_with_uuid(sandbox, uuid) -> list:
    page = stripe_client(sandbox).v1.accounts.list(params={"limit": 100})
    return [a for a in page.auto_paging_iter() if (a.to_dict().get("metadata") or {}).get("provider_account_uuid")
            == str(uuid)]


def audits(db, action) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def start(db, provider, clock):
    account = payout_accounts.open_account(db, provider, actor=actor_of(provider))
    db.commit()
    url = payout_accounts.start_onboarding(db, account, actor=actor_of(provider), now=clock.now(),
                                           refresh_url=REFRESH, return_url=RETURN)
    db.commit()
    return account, url


def snap(account_id, *, submitted=False, payouts=False, transfers=False, due=("external_account",),
         disabled=None, uuid=None) -> ConnectedAccount:
    return ConnectedAccount(id=account_id, details_submitted=submitted, charges_enabled=payouts,
                            payouts_enabled=payouts, transfers_active=transfers, requirements_due=tuple(due),
                            disabled_reason=disabled, metadata={"provider_account_uuid": str(uuid)} if uuid else {})


def test_start_onboarding_creates_one_account_and_a_fresh_link_each_time(db, provider, sandbox, clock):
    account, first = start(db, provider, clock)
    assert account.stripe_account_id.startswith("acct_") and account.status == "onboarding"
    assert first.startswith(sandbox.api_base + "/_sandbox/onboarding/")
    again, second = start(db, provider, clock)
    assert again.id == account.id and again.stripe_account_id == account.stripe_account_id
    assert second != first                                   # links are single use: a new one each time
    assert db.scalar(select(func.count()).select_from(ProviderAccount)) == 1
    assert len(accounts_with_uuid(sandbox, account.uuid)) == 1
    # What Stripe got: opaque ids only, a manual payout schedule, the transfers capability.
    remote = stripe_client(sandbox).v1.accounts.retrieve(account.stripe_account_id).to_dict()
    assert remote["type"] == "express" and remote["metadata"] == {
        "provider_account_uuid": str(account.uuid), "provider_id": str(provider.id)}
    assert remote["settings"]["payouts"]["schedule"]["interval"] == "manual"
    assert "transfers" in remote["capabilities"]
    assert not remote.get("email") and not (remote.get("business_profile") or {}).get("name")
    assert [a.action for a in audits(db, "payout_account.opened")] == ["payout_account.opened"]
    assert len(audits(db, "payout_account.created")) == 1
    updated = audits(db, "payout_account.updated")
    assert len(updated) == 1 and updated[0].details["to"] == "onboarding"


def test_killed_after_stripe_created_the_account_the_same_key_returns_it(db, provider, sandbox, clock):
    account = payout_accounts.open_account(db, provider, actor=actor_of(provider))
    db.commit()
    # Stripe creates the account, then the process dies before our commit: nothing of it is stored.
    made = gateway().create_express_account(key=account.key("create"), metadata={
        "provider_account_uuid": str(account.uuid), "provider_id": str(provider.id)})
    db.rollback()
    db.expire_all()
    fresh = db.get(ProviderAccount, account.id)
    assert fresh.stripe_account_id is None and fresh.status == "creating"
    # The retry (the provider presses again) uses the same key: Stripe answers with the same account.
    _, url = start(db, provider, clock)
    assert db.get(ProviderAccount, account.id).stripe_account_id == made.id
    assert len(accounts_with_uuid(sandbox, account.uuid)) == 1
    assert url


def test_a_500_after_the_account_was_made_is_reconciled_by_our_uuid(db, provider, sandbox, clock):
    account = payout_accounts.open_account(db, provider, actor=actor_of(provider))
    db.commit()
    sandbox.inject_faults("error_after", path="/v1/accounts", method="POST")
    _, url = start(db, provider, clock)
    assert url and len(accounts_with_uuid(sandbox, account.uuid)) == 1
    assert db.get(ProviderAccount, account.id).stripe_account_id == accounts_with_uuid(sandbox, account.uuid)[0].id


def test_snapshots_apply_once_and_an_older_event_never_overwrites_a_newer(db, provider, clock):
    account = payout_accounts.open_account(db, provider, actor=actor_of(provider))
    account.stripe_account_id, account.status = "acct_test000000001", "onboarding"
    db.commit()
    hook = Actor.system("webhook")
    enabled = snap("acct_test000000001", submitted=True, payouts=True, transfers=True, due=())
    half = snap("acct_test000000001", submitted=True, payouts=False, transfers=False, due=("external_account",))
    assert payout_accounts.apply_snapshot(db, account, enabled, actor=hook, source="webhook", now=clock.now(),
                                          event_created=2000)
    assert account.status == "enabled" and account.ready and account.last_event_created == 2000
    # The same snapshot again (a duplicate): nothing changes, nothing is audited.
    assert not payout_accounts.apply_snapshot(db, account, enabled, actor=hook, source="webhook", now=clock.now(),
                                              event_created=2000)
    # An older event arriving late: ignored.
    assert not payout_accounts.apply_snapshot(db, account, half, actor=hook, source="webhook", now=clock.now(),
                                              event_created=1000)
    assert account.status == "enabled" and account.last_event_created == 2000
    # A newer one: applied.
    assert payout_accounts.apply_snapshot(db, account, half, actor=hook, source="webhook", now=clock.now(),
                                          event_created=3000)
    assert account.status == "restricted" and account.requirements_due == ["external_account"]
    db.commit()
    assert [(a.details["from"], a.details["to"]) for a in audits(db, "payout_account.updated")] == [
        ("onboarding", "enabled"), ("enabled", "restricted")]


def test_status_is_derived_from_stripes_flags():
    from app.models.payouts import derive_status

    def status(**kw):
        base = dict(details_submitted=True, charges_enabled=True, payouts_enabled=True, transfers_active=True,
                    requirements_due=[], disabled_reason=None)
        return derive_status(**{**base, **kw})

    assert status() == "enabled"
    assert status(details_submitted=False) == "onboarding"
    assert status(payouts_enabled=False) == "restricted"
    assert status(transfers_active=False) == "restricted"
    assert status(requirements_due=["individual.verification.document"]) == "restricted"
    assert status(disabled_reason="requirements.past_due") == "restricted"
    assert status(disabled_reason="rejected.fraud") == "disabled"


def test_a_snapshot_of_another_account_is_refused(db, provider, clock):
    account = payout_accounts.open_account(db, provider, actor=actor_of(provider))
    account.stripe_account_id, account.status = "acct_test000000002", "onboarding"
    db.commit()
    try:
        payout_accounts.apply_snapshot(db, account, snap("acct_someone_else"), actor=Actor.system(),
                                       source="test", now=clock.now())
    except payout_accounts.AccountMismatch:
        pass
    else:
        raise AssertionError("a snapshot of another account was applied")
    assert account.status == "onboarding"


def test_readiness_lists_every_provider_with_what_is_due(db, provider, other_provider, sandbox, clock):
    account, _ = start(db, provider, clock)
    sandbox.onboard_account(account.stripe_account_id)
    payout_accounts.refresh_account(db, account, actor=actor_of(provider), now=clock.now())
    db.commit()
    rows = {r.name: r for r in payout_accounts.readiness(db)}
    assert rows["Dr. Ada Quill"].ready and rows["Dr. Ada Quill"].words == "Ready to be paid"
    assert rows["Dr. Ada Quill"].requirements_due == []
    assert not rows["Dr. Ben Other"].ready and rows["Dr. Ben Other"].status is None
    assert rows["Dr. Ben Other"].words == "Not connected"
