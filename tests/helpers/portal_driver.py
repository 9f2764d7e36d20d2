"""Drive a running portal (tests/helpers/cluster.py) over HTTP the way patients do, and record
every answer: ``Recorder.server_errors()`` is what "no 5xx" checks.

Seeding (providers, visit types, patients) goes through the app's own services in this process
(``Seeder``), with the suite's cheap argon2 parameters, which the servers then verify cheaply.
"""
from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timedelta, timezone

import requests
import stripe

from tests.helpers.web import CSRF_RE

UTC = timezone.utc
SUCCESS = "4242424242424242"
PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


class Recorder:
    """Every HTTP answer (and connection error) the driver saw, by scenario."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answers: list[tuple[str, str, str, int]] = []      # (scenario, method, path, status)
        self.scenario = "?"
        self.allow_503 = False

    def add(self, method: str, url: str, status: int) -> None:
        with self.lock:
            self.answers.append((self.scenario, method, re.sub(r"^https?://[^/]+", "", url), status))

    def server_errors(self) -> list[tuple]:
        """500-class answers; a 503 (the database is away, a friendly page) only where allowed."""
        return [a for a in self.answers if a[3] >= 500 and not (a[3] == 503 and self.allow_503)]


def _csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


@dataclass
class Patient:
    email: str
    base: str
    recorder: Recorder
    http: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, *, base: str | None = None, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 60)
        url = (base or self.base) + path
        try:
            answer = self.http.request(method, url, **kwargs)
        except requests.RequestException:
            self.recorder.add(method, url, 0)           # connection refused / reset: no answer at all
            raise
        self.recorder.add(method, url, answer.status_code)
        return answer

    def login(self) -> None:
        page = self.request("GET", "/login")
        assert page.status_code == 200, page.status_code
        answer = self.request("POST", "/login", data={"email": self.email, "password": PASSWORD,
                                                      "csrf_token": _csrf(page.text)})
        assert answer.status_code == 303, (answer.status_code, answer.text[:300])

    def hold_form(self, provider_id: int, type_id: int) -> str:
        page = self.request("GET", f"/book/providers/{provider_id}?type_id={type_id}")
        assert page.status_code == 200, page.status_code
        return _csrf(page.text)

    def hold(self, provider_id: int, type_id: int, starts_at: datetime, csrf: str | None = None,
             base: str | None = None) -> requests.Response:
        csrf = csrf or self.hold_form(provider_id, type_id)
        return self.request("POST", f"/book/providers/{provider_id}/holds", base=base,
                            data={"type_id": type_id, "starts_at": starts_at.isoformat(), "csrf_token": csrf})

    @staticmethod
    def hold_id(answer: requests.Response) -> int:
        assert answer.status_code == 303, (answer.status_code, answer.text[:300])
        found = re.search(r"/book/holds/(\d+)", answer.headers["Location"])
        assert found, answer.headers["Location"]
        return int(found.group(1))

    def checkout(self, appointment_id: int, base: str | None = None) -> "Checkout":
        page = self.request("GET", f"/checkout/{appointment_id}", base=base)
        assert page.status_code == 200, (page.status_code, page.text[:500])
        secret = re.search(r'data-client-secret="([^"]*)"', page.text).group(1)
        csrf = re.search(r'data-csrf="([^"]*)"', page.text).group(1)
        return Checkout(self, appointment_id, secret.split("_secret_")[0], secret, csrf)

    def release(self, appointment_id: int) -> requests.Response:
        page = self.request("GET", f"/book/holds/{appointment_id}")
        return self.request("POST", f"/book/holds/{appointment_id}/release", data={"csrf_token": _csrf(page.text)})


@dataclass
class Checkout:
    patient: Patient
    appointment_id: int
    intent_id: str
    client_secret: str
    csrf: str

    def pay(self, sandbox, number: str = SUCCESS):
        """What Stripe.js does with the publishable key: a PaymentMethod, then confirm."""
        http = stripe.RequestsClient()
        try:
            client = stripe.StripeClient(sandbox.publishable_key, base_addresses={"api": sandbox.api_base},
                                         http_client=http, max_network_retries=0)
            method = client.v1.payment_methods.create(params={"type": "card", "card": {
                "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
            return client.v1.payment_intents.confirm(self.intent_id, params={
                "payment_method": method.id, "client_secret": self.client_secret,
                "return_url": "http://127.0.0.1/return"})
        finally:
            http.close()

    def complete(self, base: str | None = None, timeout: float = 60) -> requests.Response:
        return self.patient.request("POST", f"/checkout/{self.appointment_id}/complete", base=base,
                                    headers={"X-CSRFToken": self.csrf}, timeout=timeout)


class Seeder:
    """Rows made through the app's services in this process, on the cluster's database."""

    def __init__(self, env: dict):
        from app import create_app
        from app.settings import Settings

        self.app = create_app(Settings.from_env(env))

    def close(self) -> None:
        from app.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        conn = self.app.extensions.get("redis")
        if conn is not None:
            conn.close()
        gateway = self.app.extensions.get("stripe_gateway")
        if gateway is not None:
            gateway.close()

    def clinic(self, *, price_cents: int = 12500):
        """A fresh provider (UTC, open 06:00-22:00 every day) offering one deposit-to-book visit;
        returns (provider_id, type_id, a slot two days ahead at 10:00 UTC)."""
        from app.extensions import db
        from app.models import AppointmentType, AvailabilityRule, Provider, Specialty
        from app.services import accounts
        from app.services.audit import Actor

        n = next(_counter)
        with self.app.app_context():
            session = db.session
            visit = AppointmentType(name=f"Fault visit {n}", duration_minutes=30, buffer_before_minutes=0,
                                    buffer_after_minutes=0, price_cents=price_cents,
                                    payment_timing="deposit_to_book", modality="telehealth",
                                    min_notice_minutes=60, horizon_days=30, cancellation_window_hours=24)
            spec = Specialty(name=f"Fault specialty {n}-{id(self)}")
            session.add_all([visit, spec])
            session.flush()
            user = accounts.create_staff(session, actor=Actor.system("faults"), role="provider",
                                         full_name=f"Dr Fault {n}", email=f"provider{n}-{id(self)}@faults.test",
                                         timezone_name="UTC", password=PASSWORD)
            provider = Provider(user_id=user.id, specialty_id=spec.id, timezone="UTC")
            provider.types = [visit]
            session.add(provider)
            session.flush()
            for weekday in range(7):
                session.add(AvailabilityRule(provider_id=provider.id, weekday=weekday,
                                             start_time=dtime(6), end_time=dtime(22)))
            session.commit()
            day = (datetime.now(UTC) + timedelta(days=2)).date()
            return provider.id, visit.id, datetime.combine(day, dtime(10), UTC)

    def patients(self, count: int) -> list[str]:
        from app.extensions import db
        from app.services import accounts
        from app.services.audit import Actor

        emails = []
        with self.app.app_context():
            for _ in range(count):
                n = next(_counter)
                email = f"patient{n}-{id(self)}@faults.test"
                accounts.register_patient(db.session, full_name=f"Patient Fault {n}", email=email,
                                          phone="+15555550123", timezone_name="UTC", password=PASSWORD,
                                          actor=Actor.system("faults"))
                emails.append(email)
            db.session.commit()
        return emails
