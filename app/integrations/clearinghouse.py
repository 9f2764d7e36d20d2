"""The one module that speaks to the clearinghouse: eligibility (X12 270/271), claims (837P) and
remittances (835), as JSON over HTTPS.

In development and tests the clearinghouse is the local payer simulator (``devtools/payer_sandbox``),
started by the run command and the fixtures and named by ``CLEARINGHOUSE_URL`` /
``CLEARINGHOUSE_API_KEY``; this module cannot tell it from a real one.  A real clearinghouse (Change
Healthcare/Optum, Availity, Stedi, Claim.MD) is reached through an adapter service speaking the same
JSON, or by changing only this module.

Every call here is idempotent (an eligibility inquiry is a query; a claim is keyed by our claim id and
the clearinghouse answers a repeat with the first answer), so each is retried once after a connection
error or a timeout.  Errors come out as ``ClearinghouseUnavailable`` (not reached, no answer, a 5xx or
429: try again later) or ``ClearinghouseRejected`` (a 4xx: the request itself is wrong).  Answers come
back as small frozen dataclasses, so services never see the wire format.  Nothing here logs a request
or response body: they carry PHI (names, birth dates, member ids, diagnoses).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT = (3.05, 20.0)           # connect, read (seconds)
SIGNATURE_HEADER = "X-Payer-Signature"


class ClearinghouseError(Exception):
    """The clearinghouse could not be used for this request."""


class ClearinghouseUnavailable(ClearinghouseError):
    """Not reached, no answer in time, or a server error: nothing is known to have been refused. Retry later."""


class ClearinghouseRejected(ClearinghouseError):
    """The clearinghouse refused the request (a 4xx): retrying the same request will not help."""

    def __init__(self, status: int, code: str, message: str = "", details: Sequence[str] = ()):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, tuple(details)


class InvalidSignature(ClearinghouseError):
    """A pushed remittance whose signature does not verify (or is too old)."""


# -- what comes back ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EligibilityError:
    """An AAA segment of the 271: e.g. 72 invalid member id, 75 subscriber not found, 71 birth date mismatch."""
    code: str
    description: str
    followup_action: str | None = None


@dataclass(frozen=True)
class Eligibility:
    """The content of a 271.  ``active`` is False both for inactive coverage and for an error answer
    (then ``errors`` says why).  ``raw`` is the whole answer as received, to store with the coverage."""
    id: str | None
    payer_id: str
    member_id: str
    service_date: date
    active: bool
    plan_name: str | None
    group_number: str | None
    coverage_start: date | None
    coverage_end: date | None
    copay_cents: int | None
    coinsurance_percent: int | None
    deductible_cents: int | None
    deductible_met_cents: int | None
    deductible_remaining_cents: int | None
    oop_max_cents: int | None
    oop_met_cents: int | None
    oop_remaining_cents: int | None
    errors: tuple[EligibilityError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def error_codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.errors)


@dataclass(frozen=True)
class ClaimLine:
    """One 837P service line (SV1).  ``diagnosis_pointers`` are 1-based positions in the claim's diagnoses."""
    code_system: str                      # CPT | HCPCS | LOCAL
    code: str
    billed_cents: int
    units: int = 1
    modifiers: tuple[str, ...] = ()
    diagnosis_pointers: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class ClaimAck:
    claim_id: str
    payer_claim_number: str
    status: str                           # accepted
    received_at: datetime | None
    adjudicate_after: datetime | None
    replayed: bool = False                # True: the clearinghouse already had this claim id


@dataclass(frozen=True)
class Adjustment:
    """A CAS adjustment: group (PR patient responsibility, CO contractual obligation, OA other, PI payer
    initiated), CARC code (1 deductible, 2 coinsurance, 3 copay, 45 contractual, 50, 197, 204, ...)."""
    group: str
    code: str
    amount_cents: int
    description: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return f"{self.group}-{self.code}"


@dataclass(frozen=True)
class RemittanceLine:
    line_number: int
    code_system: str
    code: str
    modifiers: tuple[str, ...]
    units: int
    billed_cents: int
    allowed_cents: int
    paid_cents: int
    adjustments: tuple[Adjustment, ...]


@dataclass(frozen=True)
class Remittance:
    """The 835 content for one claim.  ``seq`` is the clearinghouse's cursor: pass the largest one seen
    as ``since`` to ``Clearinghouse.remittances``."""
    id: str
    seq: int
    claim_id: str
    payer_claim_number: str
    payer_id: str
    member_id: str
    service_date: date
    status: str                           # processed | denied
    claim_status_code: str                # CLP02: 1 processed as primary, 4 denied
    billed_cents: int
    allowed_cents: int
    paid_cents: int
    lines: tuple[RemittanceLine, ...]
    created_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def adjustments(self) -> tuple[Adjustment, ...]:
        return tuple(a for line in self.lines for a in line.adjustments)


@dataclass(frozen=True)
class ClaimStatus:
    claim_id: str
    payer_claim_number: str
    status: str                           # accepted | adjudicated
    remittance: Remittance | None


@dataclass(frozen=True)
class Payer:
    id: str
    name: str


def patient_responsibility_cents(remittance: Remittance) -> int:
    """What the patient owes: the sum of the PR adjustments (deductible, coinsurance, copay, not covered)."""
    return sum(a.amount_cents for a in remittance.adjustments if a.group == "PR")


def written_off_cents(remittance: Remittance) -> int:
    """What the clinic writes off and may not bill the patient: the sum of the CO adjustments
    (CO-45 contractual, denials such as CO-50 or CO-197)."""
    return sum(a.amount_cents for a in remittance.adjustments if a.group == "CO")


# -- the client ---------------------------------------------------------------------------------------

class Clearinghouse:
    def __init__(self, base_url: str, api_key: str, *, timeout=DEFAULT_TIMEOUT,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"Clearinghouse({self.base_url!r})"

    def check_eligibility(self, *, payer_id: str, member_id: str, service_date: date,
                          subscriber_first_name: str | None = None, subscriber_last_name: str | None = None,
                          subscriber_birth_date: date | None = None, service_type_codes: Iterable[str] = ("30",),
                          provider_npi: str | None = None) -> Eligibility:
        """A 270 inquiry.  Service type 30 is "health benefit plan coverage"; 98 an office visit."""
        body = {"payer_id": payer_id, "member_id": member_id, "service_date": service_date.isoformat(),
                "service_type_codes": list(service_type_codes),
                "subscriber": {"first_name": subscriber_first_name, "last_name": subscriber_last_name,
                               "birth_date": subscriber_birth_date.isoformat() if subscriber_birth_date else None}}
        if provider_npi:
            body["provider"] = {"npi": provider_npi}
        data, _ = self._request("POST", "/eligibility", json_body=body)
        try:
            return _eligibility(data)
        except (KeyError, TypeError, ValueError) as error:
            raise ClearinghouseUnavailable(f"clearinghouse: malformed eligibility answer ({error!r})") from None

    def submit_claim(self, *, claim_id: str, payer_id: str, member_id: str, service_date: date,
                     diagnoses: Sequence[str], lines: Sequence[ClaimLine], place_of_service: str = "11",
                     provider_npi: str | None = None) -> ClaimAck:
        """An 837P claim, keyed by our ``claim_id``: submitting it again gives the first answer
        (``replayed``); the same id with different content is a ``ClearinghouseRejected`` (409)."""
        body = {"claim_id": claim_id, "payer_id": payer_id, "member_id": member_id,
                "service_date": service_date.isoformat(), "place_of_service": place_of_service,
                "diagnoses": list(diagnoses),
                "lines": [{"code_system": ln.code_system, "code": ln.code, "modifiers": list(ln.modifiers),
                           "units": ln.units, "billed_cents": ln.billed_cents,
                           "diagnosis_pointers": list(ln.diagnosis_pointers)} for ln in lines]}
        if provider_npi:
            body["provider"] = {"npi": provider_npi}
        data, response = self._request("POST", "/claims", json_body=body)
        try:
            return ClaimAck(claim_id=data["claim_id"], payer_claim_number=data["payer_claim_number"],
                            status=data["status"], received_at=_instant(data.get("received_at")),
                            adjudicate_after=_instant(data.get("adjudicate_after")),
                            replayed=response.headers.get("Idempotent-Replayed") == "true")
        except (KeyError, TypeError, ValueError) as error:
            raise ClearinghouseUnavailable(f"clearinghouse: malformed claim answer ({error!r})") from None

    def claim_status(self, claim_id: str) -> ClaimStatus:
        data, _ = self._request("GET", f"/claims/{quote(claim_id, safe='')}")
        try:
            rem = data.get("remittance")
            return ClaimStatus(claim_id=data["claim_id"], payer_claim_number=data["payer_claim_number"],
                               status=data["status"], remittance=_remittance(rem) if rem else None)
        except (KeyError, TypeError, ValueError) as error:
            raise ClearinghouseUnavailable(f"clearinghouse: malformed claim status ({error!r})") from None

    def remittances(self, since: int = 0, *, limit: int = 100) -> list[Remittance]:
        """Remittances after the cursor ``since`` (a remittance's ``seq``), oldest first, all pages."""
        out: list[Remittance] = []
        while True:
            data, _ = self._request("GET", "/remittances", params={"since": since, "limit": limit})
            try:
                page = [_remittance(r) for r in data["data"]]
            except (KeyError, TypeError, ValueError) as error:
                raise ClearinghouseUnavailable(f"clearinghouse: malformed remittances ({error!r})") from None
            out.extend(page)
            if not data.get("has_more") or not page:
                return out
            since = page[-1].seq

    def payers(self) -> list[Payer]:
        data, _ = self._request("GET", "/payers")
        return [Payer(p["id"], p["name"]) for p in data["data"]]

    # -- HTTP -------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json_body: dict | None = None, params: dict | None = None,
                 idempotent: bool = True) -> tuple[dict, requests.Response]:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        attempts = 2 if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(method, url, json=json_body, params=params, headers=headers,
                                                timeout=self.timeout)
                break
            except (requests.ConnectionError, requests.Timeout) as error:
                log.warning("clearinghouse %s %s: %s (attempt %d of %d)", method, path,
                            error.__class__.__name__, attempt, attempts)
                if attempt == attempts:
                    raise ClearinghouseUnavailable(f"clearinghouse not reached: {error.__class__.__name__}") from None
            except requests.RequestException as error:
                raise ClearinghouseUnavailable(f"clearinghouse: {error.__class__.__name__}") from None
        log.info("clearinghouse %s %s -> %s", method, path, response.status_code)
        if response.status_code >= 500 or response.status_code == 429:
            raise ClearinghouseUnavailable(f"clearinghouse answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            err = (data or {}).get("error") if isinstance(data, dict) else None
            err = err if isinstance(err, dict) else {}
            raise ClearinghouseRejected(response.status_code, str(err.get("code") or "rejected"),
                                        str(err.get("message") or ""), [str(d) for d in err.get("details") or []])
        if not isinstance(data, dict):
            raise ClearinghouseUnavailable(f"clearinghouse: not a JSON object ({response.status_code})")
        return data, response


def from_settings(settings) -> Clearinghouse | None:
    """The configured clearinghouse, or None when ``CLEARINGHOUSE_URL`` is unset (no clearinghouse)."""
    url = getattr(settings, "CLEARINGHOUSE_URL", None)
    if not url:
        return None
    return Clearinghouse(url, getattr(settings, "CLEARINGHOUSE_API_KEY", None) or "")


def verify_webhook(body: bytes, signature: str | None, secret: str, *, tolerance: float = 300,
                   now: float | None = None) -> Remittance:
    """A pushed ``remittance.available`` event, verified: ``X-Payer-Signature: t=<unix>,v1=<hex>`` where
    v1 is HMAC-SHA256(secret, "<t>.<body>").  Polling ``remittances`` stays the source of truth."""
    parts = dict(p.split("=", 1) for p in (signature or "").split(",") if "=" in p)
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        raise InvalidSignature("no timestamp") from None
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise InvalidSignature("signature mismatch")
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        raise InvalidSignature("signature too old")
    try:
        event = json.loads(body)
        return _remittance(event["data"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidSignature(f"malformed event ({error.__class__.__name__})") from None


# -- parsing --------------------------------------------------------------------------------------------

def _day(value) -> date | None:
    return date.fromisoformat(value) if value else None


def _instant(value) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _eligibility(d: dict) -> Eligibility:
    cov = d.get("coverage") or {}
    ded = d.get("deductible") or {}
    oop = d.get("out_of_pocket") or {}
    return Eligibility(
        id=d.get("id"), payer_id=d["payer"]["id"], member_id=d["member_id"],
        service_date=date.fromisoformat(d["service_date"]), active=bool(d.get("active")),
        plan_name=cov.get("plan_name"), group_number=cov.get("group_number"),
        coverage_start=_day(cov.get("start")), coverage_end=_day(cov.get("end")),
        copay_cents=d.get("copay_cents"), coinsurance_percent=d.get("coinsurance_percent"),
        deductible_cents=ded.get("amount_cents"), deductible_met_cents=ded.get("met_cents"),
        deductible_remaining_cents=ded.get("remaining_cents"),
        oop_max_cents=oop.get("amount_cents"), oop_met_cents=oop.get("met_cents"),
        oop_remaining_cents=oop.get("remaining_cents"),
        errors=tuple(EligibilityError(e["code"], e.get("description", ""), e.get("followup_action"))
                     for e in d.get("errors") or []),
        raw=d)


def _remittance(d: dict) -> Remittance:
    lines = tuple(
        RemittanceLine(line_number=int(x["line_number"]), code_system=x["code_system"], code=x["code"],
                       modifiers=tuple(x.get("modifiers") or ()), units=int(x["units"]),
                       billed_cents=int(x["billed_cents"]), allowed_cents=int(x["allowed_cents"]),
                       paid_cents=int(x["paid_cents"]),
                       adjustments=tuple(Adjustment(a["group"], str(a["code"]), int(a["amount_cents"]),
                                                    a.get("description")) for a in x.get("adjustments") or ()))
        for x in d["lines"])
    return Remittance(
        id=d["id"], seq=int(d["seq"]), claim_id=d["claim_id"], payer_claim_number=d["payer_claim_number"],
        payer_id=d["payer"]["id"], member_id=d["member_id"], service_date=date.fromisoformat(d["service_date"]),
        status=d["status"], claim_status_code=str(d["claim_status_code"]), billed_cents=int(d["billed_cents"]),
        allowed_cents=int(d["allowed_cents"]), paid_cents=int(d["paid_cents"]), lines=lines,
        created_at=_instant(d.get("created")), raw=d)
