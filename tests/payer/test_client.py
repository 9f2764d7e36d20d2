"""The client's failure mapping and retries, its settings, the simulator's optional webhook, and no PHI
in the simulator's log or state."""
import json
import logging
import socket
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from app.integrations import clearinghouse as ch
from app.integrations.clearinghouse import (
    ClaimLine, Clearinghouse, ClearinghouseUnavailable, InvalidSignature, verify_webhook)
from app.settings import ConfigError, Settings

DAY = date(2026, 12, 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_clearinghouse_is_unavailable_after_one_retry(caplog):
    client = Clearinghouse(f"http://127.0.0.1:{_closed_port()}", "k", timeout=(0.5, 1))
    with caplog.at_level(logging.WARNING, logger=ch.__name__), pytest.raises(ClearinghouseUnavailable):
        client.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000001", service_date=DAY)
    assert len([r for r in caplog.records if "attempt" in r.getMessage()]) == 2
    with pytest.raises(ClearinghouseUnavailable):
        client.remittances(0)


def test_one_dropped_connection_is_retried(clearinghouse, payer_sandbox):
    payer_sandbox.inject_fault("drop", path="/eligibility")
    assert clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000001", service_date=DAY).active
    payer_sandbox.inject_fault("drop", count=2, path="/eligibility")
    with pytest.raises(ClearinghouseUnavailable):
        clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id="W100000001", service_date=DAY)


def test_a_server_error_or_a_timeout_is_unavailable(clearinghouse, payer_sandbox):
    payer_sandbox.inject_fault("error", path="/remittances")
    with pytest.raises(ClearinghouseUnavailable, match="500"):
        clearinghouse.remittances(0)
    slow = Clearinghouse(payer_sandbox.api_base, payer_sandbox.api_key, timeout=(1, 0.3))
    payer_sandbox.inject_fault("slow", count=2, path="/payers", delay=1.0)
    with pytest.raises(ClearinghouseUnavailable):
        slow.payers()


def test_settings_name_the_clearinghouse_and_the_app_does_not_need_one(tmp_path):
    unset = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    assert unset.CLEARINGHOUSE_URL is None and ch.from_settings(unset) is None
    assert unset.PAYER_ADJUDICATION_DELAY == timedelta(seconds=30)
    given = Settings.from_env({"INSTANCE_PATH": str(tmp_path), "CLEARINGHOUSE_URL": "http://127.0.0.1:9/",
                               "CLEARINGHOUSE_API_KEY": "secret-key", "PAYER_ADJUDICATION_DELAY_SECONDS": "2"})
    client = ch.from_settings(given)
    assert client.base_url == "http://127.0.0.1:9" and client.api_key == "secret-key"
    assert given.PAYER_ADJUDICATION_DELAY == timedelta(seconds=2)
    assert "secret-key" not in repr(given) and "secret-key" not in repr(client)


def test_production_refuses_the_simulators_key(tmp_path):
    env = {"APP_ENV": "production", "SECRET_KEY": "s", "DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r",
           "AUDIT_HMAC_KEY": "k", "INSTANCE_PATH": str(tmp_path), "STRIPE_SECRET_KEY": "sk_live_x",
           "STRIPE_PUBLISHABLE_KEY": "pk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
           "FIELD_KEYS": "prod1:cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=",
           "LOOKUP_HASH_KEY": "prod-lookup-hash-key-0123456789abcdef",
           "CLEARINGHOUSE_URL": "http://127.0.0.1:9", "CLEARINGHOUSE_API_KEY": "payer_test_sandbox"}
    with pytest.raises(ConfigError, match="CLEARINGHOUSE_API_KEY"):
        Settings.from_env(env)
    Settings.from_env({**env, "CLEARINGHOUSE_API_KEY": "a-real-key"})
    del env["CLEARINGHOUSE_URL"], env["CLEARINGHOUSE_API_KEY"]
    Settings.from_env(env)                                  # none at all: fine


def test_no_name_birth_date_or_member_id_in_the_simulators_log_or_state(clearinghouse, payer_sandbox, new_member,
                                                                       claim_ids, caplog):
    member = new_member(birth_date="1961-07-19")
    with caplog.at_level(logging.DEBUG):
        e = clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                                            subscriber_first_name="Zebediah", subscriber_last_name="Quartermaine",
                                            subscriber_birth_date=date(1961, 7, 19))
        assert e.active
        clearinghouse.check_eligibility(payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                                        subscriber_first_name="Zebediah", subscriber_last_name="Quartermaine",
                                        subscriber_birth_date=date(1961, 7, 20))            # AAA 71
    # a malformed birth date is refused without being echoed or logged
    refused = requests.post(payer_sandbox.api_base + "/eligibility", headers={
        "Authorization": f"Bearer {payer_sandbox.api_key}"}, json={
        "payer_id": "AETNA-DEMO", "member_id": member, "service_date": "2026-12-01",
        "subscriber": {"last_name": "Quartermaine", "birth_date": "Zebediah-1961"}})
    assert refused.status_code == 400 and "Zebediah" not in refused.text
    claim_id = next(claim_ids)
    clearinghouse.submit_claim(claim_id=claim_id, payer_id="AETNA-DEMO", member_id=member, service_date=DAY,
                               diagnoses=["F41.1"], lines=[ClaimLine("CPT", "90834", 16000)])
    payer_sandbox.adjudicate_now(claim_id)
    log = payer_sandbox.log_text()
    assert "POST /eligibility 200" in log and "POST /claims 200" in log
    for secret in ("Zebediah", "Quartermaine", "1961-07-19", "1961-07-20", member, "F41.1"):
        assert secret not in log
        assert secret not in caplog.text
    state = b"".join(p.read_bytes() for p in Path(payer_sandbox.data_dir).glob("payer_sandbox.sqlite3*"))
    for secret in (b"Zebediah", b"Quartermaine", b"1961-07-20"):
        assert secret not in state


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, self.headers.get("X-Payer-Signature")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_remittance_can_be_pushed_to_a_signed_webhook(clearinghouse, payer_sandbox, new_member, claim_ids):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received = []
    try:
        payer_sandbox.set_webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", "whsec_test")
        claim_id = next(claim_ids)
        clearinghouse.submit_claim(claim_id=claim_id, payer_id="AETNA-DEMO", member_id=new_member(),
                                   service_date=DAY, diagnoses=["J06.9"], lines=[ClaimLine("CPT", "99213", 15000)])
        payer_sandbox.adjudicate_now(claim_id)
        for _ in range(50):
            if any(json.loads(b)["data"]["claim_id"] == claim_id for b, _ in _Receiver.received):
                break
            threading.Event().wait(0.1)
        body, signature = next((b, s) for b, s in _Receiver.received if json.loads(b)["data"]["claim_id"] == claim_id)
        remittance = verify_webhook(body, signature, "whsec_test")
        assert remittance.claim_id == claim_id
        assert remittance == clearinghouse.claim_status(claim_id).remittance
        with pytest.raises(InvalidSignature):
            verify_webhook(body, signature, "another secret")
        with pytest.raises(InvalidSignature):
            verify_webhook(body.replace(b"15000", b"15001"), signature, "whsec_test")
    finally:
        payer_sandbox.set_webhook(None)
        server.shutdown()
        server.server_close()
