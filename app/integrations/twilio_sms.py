"""Twilio SMS through the official twilio SDK; request signatures for inbound webhooks.

Like SMTP's end of DATA: once the request to create a message has been written, Twilio may have
created it (and will send it) whatever happens next. A failure before that — the connection refused
or not made in time — is a plain ``SendError`` (nothing left, retry). A failure after it — no answer
within the timeout, the connection dropped while waiting, a cut-off answer — is
``SendOutcomeUnknown``: the caller records the SMS as handed over, unconfirmed, and never sends it
again on a guess (the Messages API has no idempotency key to make a second request safe).
"""
from __future__ import annotations

from requests import RequestException
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout, InvalidURL, MissingSchema, ProxyError, SSLError
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from app.integrations.messaging import OutgoingMessage, SendError, SendOutcomeUnknown, SendResult

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
        except RequestException as error:
            # Network trouble (the SDK lets requests' errors through): before the request was written,
            # worth a retry; after, the message may exist at Twilio.
            if _not_sent(error):
                raise SendError(f"twilio: {error.__class__.__name__}") from None
            raise SendOutcomeUnknown(f"twilio: unconfirmed, no answer after the request was sent "
                                     f"({error.__class__.__name__})") from None
        except (TwilioException, OSError) as error:
            raise SendError(f"twilio: {error.__class__.__name__}") from None
        return SendResult(self.name, created.sid, created.status or "queued")


def _not_sent(error: RequestException) -> bool:
    """True when the request surely never reached Twilio: the connection was not made (refused,
    unresolvable, timed out connecting, TLS or proxy refused) or the request could not be built."""
    if isinstance(error, (ConnectTimeout, SSLError, ProxyError, InvalidURL, MissingSchema)):
        return True
    if isinstance(error, RequestsConnectionError):
        cause = error.args[0] if error.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        return isinstance(cause, (NewConnectionError, NameResolutionError))
    return False


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
