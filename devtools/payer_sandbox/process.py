"""Start the payer simulator as a child process and talk to its /_sandbox/ admin routes."""
from __future__ import annotations

import os
import subprocess

from devtools import child

READY = "PAYER_SANDBOX_READY "


class PayerSandboxError(RuntimeError):
    pass


class PayerSandboxProcess(child.ChildService):
    """A running simulator.  ``PayerSandboxProcess.start(data_dir)``; ``stop()`` when done (or ``with``)."""
    error = PayerSandboxError

    def __init__(self, proc: subprocess.Popen, api_base: str, *, api_key: str, webhook_secret: str,
                 data_dir: str, log_path: str):
        self.proc = proc
        self.api_base = api_base
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.data_dir = data_dir
        self.log_path = log_path

    @classmethod
    def start(cls, data_dir, *, port: int = 0, api_key: str = "payer_test_sandbox", delay_seconds: float = 5.0,
              webhook_url: str | None = None, webhook_secret: str = "whsec_payer_sandbox",
              timeout: float = 15.0) -> "PayerSandboxProcess":
        data_dir = os.fspath(data_dir)
        os.makedirs(data_dir, exist_ok=True)
        args = ["--port", str(port), "--data", data_dir, "--api-key", api_key, "--delay", str(float(delay_seconds)),
                "--webhook-secret", webhook_secret]
        if webhook_url:
            args += ["--webhook-url", webhook_url]
        log_path = os.path.join(data_dir, "payer_sandbox.log")
        proc, api_base, t = child.spawn("devtools.payer_sandbox", args, ready=READY, log_path=log_path,
                                        timeout=timeout, error=PayerSandboxError, what="payer sandbox")
        sp = cls(proc, api_base, api_key=api_key, webhook_secret=webhook_secret, data_dir=data_dir,
                 log_path=log_path)
        sp._reader = t
        return sp

    def log_text(self) -> str:
        """Everything the simulator wrote to its log (stderr) so far."""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # -- admin routes (ChildService.admin) ------------------------------------------------
    def set_delay(self, seconds: float) -> float:
        """The default time from a claim's submission to its remittance (claims already in keep theirs)."""
        return self.admin("POST", "delay", {"seconds": seconds})["delay_seconds"]

    def put_payer(self, payer_id: str, **fields) -> dict:
        return self.admin("PUT", f"payers/{payer_id}", fields)

    def put_plan(self, plan_id: str, **fields) -> dict:
        return self.admin("PUT", f"plans/{plan_id}", fields)

    def put_member(self, payer_id: str, member_id: str, **fields) -> dict:
        """Create or change a member (fields merge into the stored ones): plan_id, active, coverage_start,
        coverage_end, deductible_met_cents, oop_met_cents, scenario, plan_overrides, adjudication_overrides,
        birth_date, note."""
        return self.admin("PUT", f"members/{payer_id}/{member_id}", fields)

    def member(self, payer_id: str, member_id: str) -> dict:
        return self.admin("GET", f"members/{payer_id}/{member_id}")

    def delete_member(self, payer_id: str, member_id: str) -> bool:
        return self.admin("DELETE", f"members/{payer_id}/{member_id}")["deleted"]

    def adjudicate_now(self, claim_id: str) -> dict:
        """Adjudicate an accepted claim at once, whatever its delay; returns its status (with remittance)."""
        return self.admin("POST", f"claims/{claim_id}/adjudicate", {})

    def eligibility_responses(self, limit: int = 100) -> list[dict]:
        return self.admin("GET", f"eligibility?limit={int(limit)}")["data"]

    def inject_fault(self, mode: str, *, count: int = 1, path: str | None = None, delay: float = 1.0) -> dict:
        """mode: error (a 500, nothing done) | drop (connection closed, nothing done) | slow (sleep, then answer)."""
        data: dict = {"mode": mode, "count": count, "delay": delay}
        if path:
            data["path"] = path
        return self.admin("POST", "faults", data)

    def reset_faults(self) -> None:
        self.admin("DELETE", "faults")

    def set_webhook(self, url: str | None, secret: str | None = None) -> dict:
        return self.admin("POST", "webhooks", {"url": url, "secret": secret})

    def webhook_deliveries(self) -> list[dict]:
        return self.admin("GET", "webhooks/deliveries")["data"]

    def reset(self) -> None:
        """Back to the demo payers, plans and members; claims, remittances and answers forgotten."""
        self.admin("POST", "reset", {})
