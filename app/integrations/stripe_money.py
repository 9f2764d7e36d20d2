"""The Stripe gateway's part for issue 16: transfers (source_transaction, transfer_group), their reversals, connected
accounts' balances and payouts, and a charge's own figures (its balance transaction).

Mixed into ``StripeGateway`` (stripe_gateway.py): ``self.client`` is the SDK's StripeClient and
``self._post(call, key, reconcile=...)`` the retry discipline (idempotency key, reconcile after a
transient failure, then the next key). Answers come back as small plain objects, never SDK types.
"""
from __future__ import annotations

import stripe  # noqa: F401

from app.integrations.stripe_common import (GatewayError, GatewayUnavailable, _code, _data,  # noqa: F401
                                            _describe, _id_of, _transient)


class MoneyMixin:
    pass
