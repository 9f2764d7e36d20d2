"""Stripe's error envelope, raised by handlers and rendered by the server."""
from __future__ import annotations

from typing import Any


class StripeAPIError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 decline_code: str | None = None, param: str | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None, keep: bool = False):
        super().__init__(message)
        # keep=True: the work done before the error is committed (e.g. a declined charge)
        self.keep = keep
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.param = param
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.decline_code:
            err["decline_code"] = self.decline_code
        if self.param:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400,
            extra: dict | None = None) -> StripeAPIError:
    return StripeAPIError(status, "invalid_request_error", message, param=param, code=code, extra=extra)


def missing(resource: str, id_: str, param: str = "id") -> StripeAPIError:
    return StripeAPIError(404, "invalid_request_error", f"No such {resource}: '{id_}'",
                          code="resource_missing", param=param)


def unexpected_state(obj: dict, action: str) -> StripeAPIError:
    kind = obj.get("object", "object").replace("_", " ")
    key = "setup_intent" if obj.get("object") == "setup_intent" else "payment_intent"
    code = "setup_intent_unexpected_state" if key == "setup_intent" else "payment_intent_unexpected_state"
    return StripeAPIError(
        400, "invalid_request_error",
        f"You cannot {action} this {kind} because it has a status of {obj.get('status')}.",
        code=code, extra={key: obj})


def auth_error(message: str) -> StripeAPIError:
    return StripeAPIError(401, "invalid_request_error", message)


def api_error() -> StripeAPIError:
    return StripeAPIError(500, "api_error", "An unknown error occurred while processing the request.")
