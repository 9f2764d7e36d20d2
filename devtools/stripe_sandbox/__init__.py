"""An offline Stripe sandbox: Stripe's REST API v1 (the part the portal uses), webhooks and Stripe.js,
held to Stripe's documented test-mode behaviour.  See README.md."""

from .process import SandboxProcess

__all__ = ["SandboxProcess"]
