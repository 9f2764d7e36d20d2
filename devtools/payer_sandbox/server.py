"""HTTP server of the payer simulator: the clearinghouse API, the adjudication timer, optional signed
webhooks, fault injection and the /_sandbox/ admin routes.  See README.md.

Logging: one line per request (method, path, status, time) on stderr.  Request bodies, the subscriber's
name and birth date, member ids and query strings are never logged.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import secrets
import sys
import threading
import time
import traceback
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urlsplit

from . import payer as P
from .store import Store

MAX_BODY = 256 * 1024
CLAIM_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,19}$")     # CPT, HCPCS and a clinic's LOCAL codes (LOC-FOLLOWUP)
MODIFIER = re.compile(r"^[A-Za-z0-9]{2}$")
DELAY_HEADER = "X-Sandbox-Adjudication-Delay"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def _invalid(details: list[str]) -> ApiError:
    return ApiError(400, "invalid_request", "The request is not valid; see details.", details)


def _date(value, name: str, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{name}: a date YYYY-MM-DD is required")
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        problems.append(f"{name}: not a date YYYY-MM-DD")   # never echo the value (it may be a DOB)
        return None


def _int(value, name: str, problems: list[str], low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(f"{name}: an integer from {low} to {high} is required")
        return None
    return value


# -- webhooks (optional) ---------------------------------------------------------------------------

def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Webhooks:
    """Pushes ``remittance.available`` to the configured URL, signed ``X-Payer-Signature: t=..,v1=..``
    (HMAC-SHA256 of "t.body"), up to 3 attempts.  Polling is the primary way; this is a convenience."""

    def __init__(self, url: str | None, secret: str):
        self.url, self.secret = url, secret
        self.log: list[dict] = []
        self.q: queue.Queue = queue.Queue()
        self.busy = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="payer-webhooks", daemon=True).start()

    def send(self, remittance: dict) -> None:
        if self.url:
            with self.lock:
                self.busy += 1
            self.q.put({"id": P.new_id("evt_", 16), "type": "remittance.available", "created": P.now_iso(),
                        "data": remittance})

    def _run(self) -> None:
        while True:
            event = self.q.get()
            body = json.dumps(event).encode()
            for attempt in range(3):
                status = None
                try:
                    req = urllib.request.Request(self.url, data=body, method="POST", headers={
                        "Content-Type": "application/json", "X-Payer-Signature": sign(self.secret, body,
                                                                                        int(time.time()))})
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        status = resp.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except OSError:
                    status = None
                self.log.append({"event": event["id"], "claim_id": event["data"]["claim_id"],
                                 "attempt": attempt + 1, "status": status})
                if status is not None and 200 <= status < 300:
                    break
                time.sleep(0.2 * 2 ** attempt)
            with self.lock:
                self.busy -= 1


# -- the application ---------------------------------------------------------------------------------

class PayerSandboxApp:
    def __init__(self, data_dir: str, *, api_key: str = "payer_test_sandbox", delay_seconds: float = 5.0,
                 webhook_url: str | None = None, webhook_secret: str = "whsec_payer_sandbox"):
        self.api_key = api_key
        self.api_base = ""
        self.store = Store(data_dir)
        with self.store.tx() as s:
            if s.get_meta("seeded") is None:
                P.seed(s)
                s.set_meta("seeded", "1")
            if s.get_meta("delay_seconds") is None:
                s.set_meta("delay_seconds", str(float(delay_seconds)))
        self.webhooks = Webhooks(webhook_url, webhook_secret)
        self.faults: list[dict] = []
        self.faults_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    @property
    def delay_seconds(self) -> float:
        with self.store.lock:
            return float(self.store.get_meta("delay_seconds", "0"))

    # -- adjudication -------------------------------------------------------------------
    def sweep(self, *, only: str | None = None, force: bool = False) -> int:
        """Adjudicate the claims that are due (or ``only`` that one, now when ``force``)."""
        ready = []
        with self.store.tx() as s:
            if only is not None:
                found = s.claim(only)
                claims = [found[1]] if found and found[1]["status"] == "accepted" else []
                if not force:
                    claims = [c for c in claims if c["adjudicate_at"] <= time.time()]
            else:
                claims = s.due_claims(time.time())
            for claim in claims:
                ready.append(self._adjudicate(s, claim))
        for remittance in ready:
            self.webhooks.send(remittance)
        return len(ready)

    def _adjudicate(self, s: Store, claim: dict) -> dict:
        payer = s.get("payer", claim["payer_id"]) or {"id": claim["payer_id"], "name": claim["payer_id"]}
        key = P.member_key(claim["payer_id"], claim["member_id"])
        member = s.get("member", key)
        plan = s.get("plan", member["plan_id"]) if member else None
        if member is not None and plan is None:
            member = None
        remittance, ded, oop = P.adjudicate(claim, payer, member, plan)
        if member is not None and (ded or oop):       # the accumulators move once, with the remittance
            member["deductible_met_cents"] += ded
            member["oop_met_cents"] += oop
            s.put("member", key, member)
        remittance = s.add_remittance(remittance)
        claim.update(status="adjudicated", adjudicated_at=remittance["created"], remittance_id=remittance["id"])
        s.save_claim(claim)
        return remittance

    # -- the API -----------------------------------------------------------------------------
    def handle_api(self, method: str, path: str, query: str, headers, body: bytes) -> tuple[int, dict, dict]:
        auth = headers.get("Authorization") or ""
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.api_key}".encode()):
            raise ApiError(401, "unauthorized", "A valid API key is required (Authorization: Bearer ...).")
        data = None
        if method == "POST":
            try:
                data = json.loads(body.decode() or "null")
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ApiError(400, "invalid_json", "The body must be a JSON object.") from None
            if not isinstance(data, dict):
                raise ApiError(400, "invalid_json", "The body must be a JSON object.")
        self.sweep()
        params = dict(parse_qsl(query))
        if method == "GET" and path == "/payers":
            with self.store.lock:
                return 200, {}, {"object": "list", "data": [{"id": p["id"], "name": p["name"]}
                                                           for p in self.store.all("payer")]}
        m = re.fullmatch(r"/payers/([^/]+)/fee_schedule", path)
        if method == "GET" and m:
            with self.store.lock:
                p = self.store.get("payer", m.group(1))
            if p is None:
                raise ApiError(404, "unknown_payer", "No such payer.")
            return 200, {}, {"object": "fee_schedule", "payer_id": p["id"],
                             "default_allowed_percent": p["default_allowed_percent"],
                             "fee_schedule": p["fee_schedule"]}
        if method == "POST" and path == "/eligibility":
            return 200, {}, self.eligibility(data)
        if method == "POST" and path == "/claims":
            return self.submit_claim(data, headers)
        m = re.fullmatch(r"/claims/([^/]+)", path)
        if method == "GET" and m:
            return 200, {}, self.claim_status(m.group(1))
        if method == "GET" and path == "/remittances":
            try:
                since = int(params.get("since") or 0)
                limit = max(1, min(500, int(params.get("limit") or 100)))
            except ValueError:
                raise _invalid(["since and limit must be integers"]) from None
            with self.store.lock:
                rows = self.store.remittances_since(since, limit)
            return 200, {}, {"object": "list", "data": rows, "next_since": rows[-1]["seq"] if rows else since,
                             "has_more": len(rows) == limit}
        raise ApiError(404, "not_found", f"No route {method} {path}.")

    def eligibility(self, data: dict) -> dict:
        problems: list[str] = []
        payer_id = data.get("payer_id")
        if not isinstance(payer_id, str) or not payer_id:
            problems.append("payer_id: required")
        member_id = data.get("member_id")
        if not isinstance(member_id, str):
            problems.append("member_id: a string is required")
        service_date = _date(data.get("service_date"), "service_date", problems)
        stc = data.get("service_type_codes", ["30"])
        if not isinstance(stc, list) or not stc or not all(isinstance(c, str) and 1 <= len(c) <= 3 for c in stc):
            problems.append("service_type_codes: a list of X12 service type codes, e.g. [\"30\"]")
        subscriber = data.get("subscriber") or {}
        if not isinstance(subscriber, dict):
            problems.append("subscriber: an object")
            subscriber = {}
        birth_date = None
        if subscriber.get("birth_date") is not None:
            birth_date = _date(subscriber.get("birth_date"), "subscriber.birth_date", problems)
        if problems:
            raise _invalid(problems)
        req = {"payer_id": payer_id, "member_id": member_id.strip(), "service_date": service_date,
               "service_type_codes": stc, "birth_date": birth_date}
        with self.store.tx() as s:
            payer = s.get("payer", payer_id)
            if payer is None:
                raise ApiError(422, "unknown_payer", "The payer id is not on the payer list.")
            member = s.get("member", P.member_key(payer_id, req["member_id"]))
            plan = s.get("plan", member["plan_id"]) if member else None
            if member is not None and plan is None:
                member = None
            response = P.eligibility_response(req, payer, member, plan)
            s.add_eligibility(response)         # kept as answered: the raw 271 content
        return response

    def submit_claim(self, data: dict, headers) -> tuple[int, dict, dict]:
        claim = self._claim_content(data)
        fingerprint = hashlib.sha256(json.dumps(claim, sort_keys=True).encode()).hexdigest()
        delay = self.delay_seconds
        if headers.get(DELAY_HEADER) not in (None, ""):
            try:
                delay = max(0.0, float(headers.get(DELAY_HEADER)))
            except ValueError:
                raise _invalid([f"{DELAY_HEADER}: seconds"]) from None
        with self.store.tx() as s:
            if s.get("payer", claim["payer_id"]) is None:
                raise ApiError(422, "unknown_payer", "The payer id is not on the payer list.")
            prior = s.claim(claim["claim_id"])
            if prior is not None:
                if prior[0] != fingerprint:
                    raise ApiError(409, "duplicate_claim_id",
                                   "This claim id was already submitted with different content.")
                return 200, {"Idempotent-Replayed": "true"}, prior[1]["ack"]
            now = time.time()
            claim.update(payer_claim_number="PCN" + "".join(str(b % 10) for b in secrets.token_bytes(12)),
                         status="accepted", received_at=P.now_iso(), adjudicate_at=now + delay,
                         adjudicate_after=datetime.fromtimestamp(now + delay, timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"),
                         adjudicated_at=None, remittance_id=None)
            claim["ack"] = {"object": "claim_ack", "claim_id": claim["claim_id"],
                            "payer_claim_number": claim["payer_claim_number"], "status": "accepted",
                            "received_at": claim["received_at"], "adjudicate_after": claim["adjudicate_after"]}
            s.insert_claim(claim, fingerprint)
        if delay == 0:
            self.sweep(only=claim["claim_id"])
        return 200, {}, claim["ack"]

    def _claim_content(self, data: dict) -> dict:
        problems: list[str] = []
        claim_id = data.get("claim_id")
        if not isinstance(claim_id, str) or not CLAIM_ID.match(claim_id):
            problems.append("claim_id: 1-64 characters A-Z a-z 0-9 . _ : -")
        payer_id = data.get("payer_id")
        if not isinstance(payer_id, str) or not payer_id:
            problems.append("payer_id: required")
        member_id = data.get("member_id")
        if not isinstance(member_id, str) or not P.MEMBER_ID.match(member_id):
            problems.append("member_id: 3-30 characters A-Z a-z 0-9 -")
        service_date = _date(data.get("service_date"), "service_date", problems)
        diagnoses = data.get("diagnoses")
        if (not isinstance(diagnoses, list) or not 1 <= len(diagnoses) <= 12
                or not all(isinstance(d, str) and ICD10.match(d) for d in diagnoses)):
            problems.append("diagnoses: 1-12 ICD-10-CM codes, e.g. \"J06.9\"")
            diagnoses = []
        pos = data.get("place_of_service", "11")
        if not isinstance(pos, str) or not re.fullmatch(r"[0-9]{2}", pos):
            problems.append("place_of_service: two digits, e.g. \"11\" office, \"10\" telehealth at home")
        lines_in = data.get("lines")
        lines = []
        if not isinstance(lines_in, list) or not 1 <= len(lines_in) <= 50:
            problems.append("lines: 1-50 service lines")
            lines_in = []
        for i, raw in enumerate(lines_in, start=1):
            name = f"lines[{i}]"
            if not isinstance(raw, dict):
                problems.append(f"{name}: an object")
                continue
            system = raw.get("code_system")
            if system not in P.CODE_SYSTEMS:
                problems.append(f"{name}.code_system: one of {', '.join(P.CODE_SYSTEMS)}")
            code = raw.get("code")
            if not isinstance(code, str) or not CODE.match(code):
                problems.append(f"{name}.code: 1-20 letters, digits, dots or dashes")
            modifiers = raw.get("modifiers")
            if modifiers is None:
                modifiers = [raw["modifier"]] if raw.get("modifier") else []
            if not isinstance(modifiers, list) or len(modifiers) > 4 or not all(
                    isinstance(x, str) and MODIFIER.match(x) for x in modifiers):
                problems.append(f"{name}.modifiers: up to 4 two-character modifiers")
                modifiers = []
            units = _int(raw.get("units", 1), f"{name}.units", problems, 1, 999)
            billed = _int(raw.get("billed_cents"), f"{name}.billed_cents", problems, 1, 100_000_000)
            pointers = raw.get("diagnosis_pointers", [1])
            if (not isinstance(pointers, list) or not 1 <= len(pointers) <= 4 or not all(
                    isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= max(1, len(diagnoses))
                    for x in pointers)):
                problems.append(f"{name}.diagnosis_pointers: 1-4 positions in diagnoses (from 1)")
            lines.append({"code_system": system, "code": code.upper() if isinstance(code, str) else code,
                          "modifiers": [x.upper() for x in modifiers], "units": units,
                          "billed_cents": billed, "diagnosis_pointers": pointers})
        if problems:
            raise _invalid(problems)
        provider = data.get("provider") if isinstance(data.get("provider"), dict) else {}
        # Only the claim's content is kept: anything else sent (names, addresses) is dropped unread.
        return {"claim_id": claim_id, "payer_id": payer_id, "member_id": member_id, "service_date": service_date,
                "place_of_service": pos, "diagnoses": diagnoses, "lines": lines,
                "provider_npi": provider.get("npi") if isinstance(provider.get("npi"), str) else None}

    def claim_status(self, claim_id: str) -> dict:
        with self.store.lock:
            found = self.store.claim(claim_id)
            if found is None:
                raise ApiError(404, "unknown_claim", "No claim with this id.")
            claim = found[1]
            remittance = self.store.remittance_for(claim_id) if claim["status"] == "adjudicated" else None
        return {"object": "claim", "claim_id": claim_id, "payer_claim_number": claim["payer_claim_number"],
                "status": claim["status"], "received_at": claim["received_at"],
                "adjudicate_after": claim["adjudicate_after"], "adjudicated_at": claim["adjudicated_at"],
                "remittance": remittance}

    # -- admin ----------------------------------------------------------------------------------
    def handle_admin(self, method: str, sub: str, data: dict) -> tuple[int, dict]:
        s = self.store
        if sub == "/health":
            return 200, {"ok": True, "api_base": self.api_base}
        if sub == "/config":
            return 200, {"api_base": self.api_base, "api_key": self.api_key, "delay_seconds": self.delay_seconds,
                         "webhook_url": self.webhooks.url}
        if sub == "/delay":
            if method == "POST":
                seconds = float(data.get("seconds", 0))
                if seconds < 0:
                    return 400, {"error": "seconds must be >= 0"}
                with s.tx():
                    s.set_meta("delay_seconds", str(seconds))
            return 200, {"delay_seconds": self.delay_seconds}
        if sub == "/reset" and method == "POST":
            with s.tx():
                s.wipe()
                P.seed(s)
            return 200, {"reset": True}
        for kind in ("payer", "plan", "member"):
            if sub == f"/{kind}s" and method == "GET":
                with s.lock:
                    return 200, {"data": s.all(kind)}
        m = re.fullmatch(r"/payers/([A-Za-z0-9_-]+)", sub)
        if m and method == "PUT":
            with s.tx():
                payer = s.get("payer", m.group(1)) or {"id": m.group(1), "name": m.group(1),
                                                      "default_allowed_percent": 60, "fee_schedule": {}}
                for k in ("name", "default_allowed_percent", "fee_schedule"):
                    if k in data:
                        payer[k] = data[k]
                if not isinstance(payer["fee_schedule"], dict) or not all(
                        isinstance(v, int) and v >= 0 for v in payer["fee_schedule"].values()):
                    return 400, {"error": "fee_schedule: {\"CPT:99213\": cents, ...}"}
                return 200, s.put("payer", payer["id"], payer)
        m = re.fullmatch(r"/plans/([A-Za-z0-9_-]+)", sub)
        if m and method == "PUT":
            with s.tx():
                plan = s.get("plan", m.group(1)) or {"id": m.group(1), "payer_id": None, "name": m.group(1),
                                                    "group_number": None, "copay_cents": 0, "coinsurance_percent": 0,
                                                    "deductible_cents": 0, "oop_max_cents": 0,
                                                    "not_covered": [], "auth_required": []}
                for k in ("payer_id", "name", "group_number", *P.PLAN_FIELDS):
                    if k in data:
                        plan[k] = data[k]
                if s.get("payer", plan["payer_id"] or "") is None:
                    return 400, {"error": "payer_id: an existing payer"}
                for k in ("copay_cents", "coinsurance_percent", "deductible_cents", "oop_max_cents"):
                    if isinstance(plan[k], bool) or not isinstance(plan[k], int) or plan[k] < 0:
                        return 400, {"error": f"{k}: a non-negative integer"}
                return 200, s.put("plan", plan["id"], plan)
        m = re.fullmatch(r"/members/([A-Za-z0-9_-]+)/([A-Za-z0-9-]+)", sub)
        if m:
            key = P.member_key(m.group(1), m.group(2))
            with s.tx():
                member = s.get("member", key)
                if method == "GET":
                    return (200, member) if member else (404, {"error": "no such member"})
                if method == "DELETE":
                    return 200, {"deleted": s.delete("member", key)}
                if method != "PUT":
                    return 405, {"error": "GET, PUT or DELETE"}
                if member is None:
                    member = P._m(m.group(1), m.group(2), None, "")
                for k in ("plan_id", "active", "coverage_start", "coverage_end", "deductible_met_cents",
                          "oop_met_cents", "scenario", "plan_overrides", "adjudication_overrides",
                          "birth_date", "note"):
                    if k in data:
                        member[k] = data[k]
                plan = s.get("plan", member["plan_id"] or "")
                if plan is None or plan["payer_id"] != member["payer_id"]:
                    return 400, {"error": "plan_id: an existing plan of this payer"}
                if member["scenario"] not in P.SCENARIOS:
                    return 400, {"error": f"scenario: one of {P.SCENARIOS}"}
                for k in ("deductible_met_cents", "oop_met_cents"):
                    if isinstance(member[k], bool) or not isinstance(member[k], int) or member[k] < 0:
                        return 400, {"error": f"{k}: a non-negative integer"}
                for k in ("plan_overrides", "adjudication_overrides"):
                    if not isinstance(member[k], dict) or set(member[k]) - set(P.PLAN_FIELDS):
                        return 400, {"error": f"{k}: keys among {P.PLAN_FIELDS}"}
                for k in ("coverage_start", "coverage_end", "birth_date"):
                    if member[k] is not None:
                        date.fromisoformat(member[k])          # ValueError -> 400
                return 200, s.put("member", key, member)
        m = re.fullmatch(r"/claims/([^/]+)/adjudicate", sub)
        if m and method == "POST":
            with s.lock:
                known = s.claim(m.group(1)) is not None
            if not known:
                return 404, {"error": "no such claim"}
            self.sweep(only=m.group(1), force=True)
            return 200, self.claim_status(m.group(1))
        if sub == "/eligibility" and method == "GET":
            with s.lock:
                return 200, {"data": s.eligibility(int(data.get("limit", 100)))}
        if sub == "/faults":
            with self.faults_lock:
                if method == "POST":
                    if data.get("mode") not in ("error", "drop", "slow"):
                        return 400, {"error": "mode: error | drop | slow"}
                    self.faults.append({"mode": data["mode"], "count": int(data.get("count", 1)),
                                        "path": data.get("path"), "delay": float(data.get("delay", 1.0))})
                elif method == "DELETE":
                    self.faults.clear()
                return 200, {"faults": list(self.faults)}
        if sub == "/webhooks/deliveries":
            if method == "DELETE":
                self.webhooks.log.clear()
            return 200, {"data": list(self.webhooks.log), "pending": self.webhooks.busy}
        if sub == "/webhooks" and method == "POST":
            self.webhooks.url = data.get("url") or None
            if data.get("secret"):
                self.webhooks.secret = data["secret"]
            return 200, {"url": self.webhooks.url}
        return 404, {"error": f"unknown sandbox route {method} /_sandbox{sub}"}

    def take_fault(self, path: str) -> dict | None:
        with self.faults_lock:
            for rule in self.faults:
                if rule["count"] > 0 and (not rule["path"] or path.startswith(rule["path"])):
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        self.faults.remove(rule)
                    return rule
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PayerSandbox/1.0"
    disable_nagle_algorithm = True
    app: PayerSandboxApp

    def log_message(self, format, *args):  # noqa: A002 - http.server's own lines carry the request line
        pass

    def log_access(self, method: str, path: str, status: int | str, started: float) -> None:
        # The path only: no query string, no body, no headers.  Paths hold our claim id at most; the
        # admin member routes' member ids are masked.
        if path.startswith("/_sandbox/members/"):
            path = "/_sandbox/members/*"
        sys.stderr.write(f"payer-sandbox {method} {path} {status} {int((time.monotonic() - started) * 1000)}ms\n")
        sys.stderr.flush()

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _json(self, status: int, obj, headers=None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        status: int | str = 500
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status = 413
                self.close_connection = True
                self._json(413, {"error": {"code": "too_large", "message": "Body too large."}})
                return
            body = self.rfile.read(length) if length > 0 else b""
            query = urlsplit(self.path).query
            if path.startswith("/_sandbox/"):
                try:
                    data = json.loads(body.decode()) if body else {}
                    data.update(dict(parse_qsl(query)))
                    status, obj = self.app.handle_admin(method, path[len("/_sandbox"):].rstrip("/"), data)
                except (ValueError, TypeError, AttributeError) as error:
                    status, obj = 400, {"error": error.__class__.__name__}
                self._json(status, obj)
                return
            rule = self.app.take_fault(path)
            if rule is not None:
                if rule["mode"] == "drop":
                    status = "dropped"
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule["mode"] == "error":
                    status = 500
                    self._json(500, {"error": {"code": "server_error", "message": "Simulated outage."}})
                    return
                time.sleep(rule["delay"])
            try:
                status, headers, obj = self.app.handle_api(method, path, query, self.headers, body)
            except ApiError as error:
                status, headers, obj = error.status, {}, error.body()
            self._json(status, obj, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - never a stack trace in a response
            traceback.print_exc(file=sys.stderr)
            try:
                self._json(500, {"error": {"code": "server_error", "message": "Internal error."}})
            except OSError:
                self.close_connection = True
        finally:
            self.log_access(method, path, status, started)


class PayerSandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def make_server(app: PayerSandboxApp, port: int = 0) -> PayerSandboxServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    srv = PayerSandboxServer(("127.0.0.1", port), handler)
    app.api_base = f"http://127.0.0.1:{srv.server_address[1]}"
    return srv
