"""Start the sandbox as a child process and talk to its /_sandbox/ admin routes."""
from __future__ import annotations

import os
import subprocess

from devtools import child

READY = "STRIPE_SANDBOX_READY "


class SandboxError(RuntimeError):
    pass


class SandboxProcess(child.ChildService):
    """A running sandbox.  ``SandboxProcess.start(data_dir)``; ``stop()`` when done (or use ``with``)."""
    error = SandboxError

    def __init__(self, proc: subprocess.Popen, api_base: str, *, secret_key: str, publishable_key: str,
                 webhook_secret: str, data_dir: str, stderr_path: str):
        self.proc = proc
        self.api_base = api_base
        self.js_url = api_base + "/v3/"
        self.secret_key = secret_key
        self.publishable_key = publishable_key
        self.webhook_secret = webhook_secret
        self.data_dir = data_dir
        self.stderr_path = stderr_path

    @classmethod
    def start(cls, data_dir, *, port: int = 0, webhook_url: str | None = None,
              secret_key: str = "sk_test_sandbox", publishable_key: str = "pk_test_sandbox",
              webhook_secret: str = "whsec_sandbox", timeout: float = 15.0) -> "SandboxProcess":
        data_dir = os.fspath(data_dir)
        os.makedirs(data_dir, exist_ok=True)
        args = ["--port", str(port), "--data", data_dir, "--secret-key", secret_key,
                "--publishable-key", publishable_key, "--webhook-secret", webhook_secret]
        if webhook_url:
            args += ["--webhook-url", webhook_url]
        stderr_path = os.path.join(data_dir, "sandbox.stderr.log")
        proc, api_base, t = child.spawn("devtools.stripe_sandbox", args, ready=READY, log_path=stderr_path,
                                        timeout=timeout, error=SandboxError, what="Stripe sandbox")
        sp = cls(proc, api_base, secret_key=secret_key, publishable_key=publishable_key,
                 webhook_secret=webhook_secret, data_dir=data_dir, stderr_path=stderr_path)
        sp._reader = t
        return sp

    # -- admin routes (ChildService.admin) ---------------------------------------
    def add_webhook_endpoint(self, url: str, *, secret: str | None = None, enabled_events=None) -> dict:
        data: dict = {"url": url}
        if secret:
            data["secret"] = secret
        if enabled_events:
            data["enabled_events"] = list(enabled_events)
        return self.admin("POST", "webhook_endpoints", data)

    def remove_webhook_endpoints(self) -> dict:
        return self.admin("DELETE", "webhook_endpoints")

    def advance_clock(self, seconds: float) -> int:
        return self.admin("POST", "clock/advance", {"seconds": seconds})["now"]

    def now(self) -> int:
        return self.admin("GET", "clock")["now"]

    def set_later(self, seconds: float) -> float:
        """How long Stripe's "later" takes in real time (a refund settling, a dispute opening, funds
        becoming available, a payout landing); advancing the clock past it also brings it on."""
        return self.admin("POST", "later", {"seconds": seconds})["later_seconds"]

    def inject_faults(self, mode: str, *, count: int = 1, path: str | None = None, method: str | None = None,
                      delay: float = 1.0) -> dict:
        """mode: slow | error_before | error_after | drop_before | drop_after."""
        data: dict = {"mode": mode, "count": count, "delay": delay}
        if path:
            data["path"] = path
        if method:
            data["method"] = method
        return self.admin("POST", "faults", data)

    def webhook_mode(self, *, duplicate: int = 1, shuffle: bool = False, delay: float = 0.0, drop: bool = False,
                     count: int | None = None, sign_offset: int = 0, max_attempts: int = 5,
                     retry_base: float = 0.2, shuffle_window: float = 0.3) -> dict:
        return self.admin("POST", "webhooks/mode", {
            "duplicate": duplicate, "shuffle": shuffle, "delay": delay, "drop": drop, "count": count,
            "sign_offset": sign_offset, "max_attempts": max_attempts, "retry_base": retry_base,
            "shuffle_window": shuffle_window})["webhook_mode"]

    def reset_faults(self) -> dict:
        """Clear API fault rules and restore normal webhook delivery."""
        return self.admin("DELETE", "faults")

    def webhook_deliveries(self) -> list[dict]:
        return self.admin("GET", "webhooks/deliveries")["data"]

    def clear_webhook_deliveries(self) -> None:
        self.admin("DELETE", "webhooks/deliveries")

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self.admin("POST", "webhooks/wait", {"timeout": timeout}, timeout=timeout + 5)["idle"]

    def complete_3ds(self, intent_id: str, *, success: bool = True) -> dict:
        """Act as the customer in the 3-D Secure challenge of a PaymentIntent or SetupIntent."""
        return self.admin("POST", f"3ds/{intent_id}", {"outcome": "succeeded" if success else "failed"})

    # -- issue 13: saved cards ----------------------------------------------------
    def expire_card(self, pm_id: str) -> dict:
        """Mark a saved card expired now: its later charges fail ``expired_card``."""
        return self.admin("POST", f"payment_methods/{pm_id}/expire", {})

    def mark_card_lost(self, pm_id: str) -> dict:
        """Mark a saved card lost now: its later charges fail ``card_declined`` / ``lost_card``."""
        return self.admin("POST", f"payment_methods/{pm_id}/lost", {})

    # -- issue 13: Connect ----------------------------------------------------------
    def onboard_account(self, account_id: str, **form) -> dict:
        """Complete a connected account's onboarding as its onboarding page would (no browser): details
        submitted, charges and payouts enabled, capabilities active, ``account.updated``. ``form`` may give the
        page's fields, e.g. ``account_number="000111111116"`` for a bank account whose payouts fail."""
        return self.admin("POST", f"accounts/{account_id}/onboard", form)
