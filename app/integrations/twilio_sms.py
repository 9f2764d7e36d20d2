"""Twilio SMS through the official twilio SDK; request signatures for inbound webhooks."""
from __future__ import annotations

from requests import RequestException
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from app.integrations.messaging import OutgoingMessage, SendError, SendResult

# Twilio error codes that retrying cannot fix (invalid or unsubscribed numbers).
PERMANENT = {21211, 21408, 21610, 21614}


class TwilioSms:
    name = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, from_number: str,
                 status_callback: str | None = None, api_base: str | None = None, timeout: float = 10.0):
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        if api_base:                       # tests: a local server standing in for Twilio's API
            self.client.api.base_url = api_base.rstrip("/")
        self.from_number = from_number
        self.status_callback = status_callback

    def send(self, message: OutgoingMessage) -> SendResult:
        params = {"to": message.to, "from_": self.from_number, "body": message.text}
        if self.status_callback:
            params["status_callback"] = self.status_callback
        try:
            created = self.client.messages.create(**params)
        except TwilioRestException as error:
            raise SendError(f"twilio {error.status} code {error.code}", permanent=error.code in PERMANENT) from None
        except (TwilioException, RequestException, OSError) as error:
            # Network trouble (the SDK lets requests' errors through) is worth a retry.
            raise SendError(f"twilio: {error.__class__.__name__}") from None
        return SendResult(self.name, created.sid, created.status or "queued")


def valid_signature(auth_token: str, url: str, params: dict, signature: str | None) -> bool:
    if not signature:
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def twiml_reply(text: str | None = None) -> str:
    """TwiML answering an inbound SMS: one reply message, or none."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)
