"""Typed settings read from the environment.

Three modes (APP_ENV): ``development`` (the default), ``test`` and
``production``. Production refuses to start when one of its secrets is
missing, naming it. The app never starts a service itself: DATABASE_URL and
REDIS_URL are always given. In development and tests the run command
(``devtools/run.py``) and the test fixtures start embedded PostgreSQL and
Redis (``devtools/embedded.py``, the ``dev`` extra) and pass their URLs in.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path

MODES = ("development", "test", "production")
PRODUCTION_SECRETS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AUDIT_HMAC_KEY",
                      "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
                      "FIELD_KEYS", "LOOKUP_HASH_KEY")
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The settings cannot make a working application."""


def _seconds(value: str | None, default: float) -> timedelta:
    return timedelta(seconds=float(value)) if value not in (None, "") else timedelta(seconds=default)


@dataclass(frozen=True)
class Settings:
    APP_ENV: str = "development"
    SECRET_KEY: str | None = None
    DATABASE_URL: str | None = None
    # The runtime engine's URL: a login role that owns nothing (app/services/db_roles.py grants it
    # SELECT/INSERT/UPDATE/DELETE, and only SELECT + INSERT on the audit tables). Unset: DATABASE_URL.
    # Migrations and `flask db grant-app-role` always use DATABASE_URL (the schema's owner).
    DATABASE_APP_URL: str | None = None
    REDIS_URL: str | None = None
    AUDIT_HMAC_KEY: str | None = None
    # Field-level encryption of PHI at rest (app/services/field_crypto.py): FIELD_KEYS is
    # "id:base64-of-32-random-bytes,id2:..." (every key that may have encrypted a stored value),
    # FIELD_KEY_ACTIVE the id new values are encrypted with (required when there are several);
    # LOOKUP_HASH_KEY (at least 32 characters) keys the look-up hashes of emails and phones.
    # Development and test derive all three from SECRET_KEY; production must set them.
    FIELD_KEYS: str | None = field(default=None, repr=False)
    FIELD_KEY_ACTIVE: str | None = None
    LOOKUP_HASH_KEY: str | None = field(default=None, repr=False)
    # Namespace for every Redis key this deployment writes (queues, rate
    # limits), so two test runs can share one Redis server.
    REDIS_NAMESPACE: str = "clinic"
    INSTANCE_PATH: Path = ROOT / "instance"
    # Automatic logoff after inactivity, per role family.
    IDLE_LOGOFF_STAFF: timedelta = timedelta(minutes=15)
    IDLE_LOGOFF_PATIENT: timedelta = timedelta(minutes=30)
    # Break-glass (app/blueprints/staff/patients.py): how long a provider's reasoned access to a
    # patient not on their schedule lasts in that browser session.
    BREAK_GLASS_MINUTES: int = 30
    # Server-side sessions (app/services/sessions.py): the absolute lifetime of a sign-in, whatever
    # the activity; a patient who ticks "remember me" gets SESSION_LIFETIME_REMEMBER instead.
    SESSION_LIFETIME_STAFF: timedelta = timedelta(hours=12)
    SESSION_LIFETIME_PATIENT: timedelta = timedelta(hours=12)
    SESSION_LIFETIME_REMEMBER: timedelta = timedelta(days=30)
    # MFA (app/services/mfa.py): how long the half-signed-in state (password right, code not yet
    # given) lasts, how old the last code may be for a step-up action (refunds), and the throttle
    # of code attempts per account.
    MFA_PENDING_TTL: timedelta = timedelta(minutes=5)
    STEP_UP_MAX_AGE: timedelta = timedelta(minutes=15)
    MFA_LIMIT_PER_ACCOUNT: str = "5 per minute"
    # Sign-in throttling (Flask-Limiter syntax).
    LOGIN_LIMIT_PER_ACCOUNT: str = "5 per minute"
    LOGIN_LIMIT_PER_ADDRESS: str = "20 per minute"
    SIGNUP_LIMIT_PER_ADDRESS: str = "10 per minute"
    # How often the worker runs its periodic sweep (audit anchor, ...).
    SWEEP_INTERVAL: timedelta = timedelta(seconds=60)
    # How often app.jobs.audit.link appends the audit chain's links (the sweep links too).
    AUDIT_LINK_INTERVAL: timedelta = timedelta(seconds=5)
    # The audit anchor (app/services/audit.py write_anchor): the chain head appended as one JSON line
    # to this append-only file (unset: <INSTANCE_PATH>/audit_anchors.jsonl) and to the log, by the
    # linking jobs at most every AUDIT_ANCHOR_INTERVAL, or sooner once AUDIT_ANCHOR_ROWS rows were
    # linked since the last anchor; `flask audit verify` compares the chain with the latest anchor.
    AUDIT_ANCHOR_PATH: Path | None = None
    AUDIT_ANCHOR_INTERVAL: timedelta = timedelta(seconds=60)
    AUDIT_ANCHOR_ROWS: int = 1000
    # The worker (worker.py): RQ SimpleWorker processes (more than 1: an RQ WorkerPool), the cap
    # of its reconnect backoff while Redis is away, and the default retry delays (seconds) of a
    # job that raised (a PostgreSQL outage, say) or was killed with its worker.
    WORKER_PROCESSES: int = 1
    WORKER_BACKOFF_MAX: timedelta = timedelta(seconds=30)
    JOB_RETRY_DELAYS: tuple = (5, 30, 120)
    # Scheduling (DESIGN.md "Timings"): all settings, so tests run them in seconds.
    HOLD_TTL: timedelta = timedelta(minutes=10)
    HOLD_EXTENSION: timedelta = timedelta(minutes=5)
    RELEASE_BEFORE_START: timedelta = timedelta(minutes=5)
    MAX_HOLDS_PER_PATIENT: int = 1
    HOLDS_PER_HOUR: int = 12          # per patient: a script cannot hold a clinic's week
    POLL_INTERVAL: timedelta = timedelta(seconds=30)
    POLL_GRACE: timedelta = timedelta(minutes=5)    # POLL_UNTIL = hold expiry + this
    PAYMENT_QUIET: timedelta = timedelta(minutes=2)  # the sweep settles attempts quiet this long
    # Video visits: the room is <TELEHEALTH_BASE_URL>/<random name>; unset, a local visit page.
    TELEHEALTH_BASE_URL: str | None = None
    VISIT_OPENS_BEFORE: timedelta = timedelta(minutes=10)
    # Messages. Twilio / SMTP unset: the dev outbox (stored, logged, listed at /dev/outbox).
    TWILIO_ACCOUNT_SID: str | None = None
    TWILIO_AUTH_TOKEN: str | None = None
    TWILIO_FROM_NUMBER: str | None = None
    TWILIO_API_BASE: str | None = None           # tests: a local stand-in for Twilio's API
    SMTP_HOST: str | None = None
    SMTP_PORT: int = 587
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_FROM: str = "Clinic Portal <no-reply@clinic.example>"
    SMTP_STARTTLS: bool = True
    PUBLIC_BASE_URL: str = "http://127.0.0.1:5000"   # links in messages
    REMINDER_OFFSETS: tuple = (timedelta(hours=24), timedelta(hours=1))
    RETRY_LINK_TTL: timedelta = timedelta(minutes=30)
    # The waitlist (issue 17): how long each offer of a freed slot waits for its patient's tap before
    # the next waitlisted patient is offered it, and how many are offered a slot at once.
    WAITLIST_OFFER_TTL: timedelta = timedelta(minutes=15)
    WAITLIST_OFFER_FANOUT: int = 1
    DECLINE_MESSAGE_GRACE: timedelta = timedelta(seconds=120)   # a decline message waits this long
    PASSWORD_RESET_TTL: timedelta = timedelta(minutes=30)
    # The FHIR R4 API (issue 17): bearer tokens' lifetime, and a search page's default and largest _count.
    FHIR_TOKEN_TTL: timedelta = timedelta(minutes=5)
    FHIR_PAGE_SIZE: int = 20
    FHIR_PAGE_MAX: int = 100
    PHONE_CODE_TTL: timedelta = timedelta(minutes=10)
    SEND_RETRY_DELAYS: tuple = (10, 60, 300)          # seconds between send retries
    # A claimed (sending) row is leased: the sweep takes back one still sending after this long
    # (its process died). Keep it well above the send job's timeout and the senders' timeouts.
    SEND_LEASE: timedelta = timedelta(minutes=15)
    SMTP_TIMEOUT: float = 10.0                        # seconds: connect and each SMTP command
    SMTP_DATA_TIMEOUT: float = 120.0                  # seconds: the reply after the message was handed over
    SEND_BATCH_SIZE: int = 100                        # due reminders one job sends (each row its own claim)
    T_WINDOW: timedelta = timedelta(minutes=30)
    # Post-visit charges (app/services/visit_charges.py): automatic off-session retries after a soft
    # decline, at these offsets from the first failure (the last one is also when an unpaid case goes
    # to collections); the patient's pay link's lifetime; a payment plan's interval between instalments.
    VISIT_RETRY_SCHEDULE: tuple = (timedelta(days=1), timedelta(days=3), timedelta(days=7))
    VISIT_LINK_TTL: timedelta = timedelta(days=14)
    PLAN_INTERVAL: timedelta = timedelta(days=30)
    HTMX_PATH: Path = ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
    CSRF_ENABLED: bool = True
    # Stripe: real Stripe when STRIPE_SECRET_KEY is set; otherwise the run
    # command and the tests start the offline sandbox (devtools/stripe_sandbox)
    # and point these at it. The app never knows which one it talks to.
    STRIPE_SECRET_KEY: str | None = None
    STRIPE_PUBLISHABLE_KEY: str | None = None
    STRIPE_WEBHOOK_SECRET: str | None = None
    STRIPE_API_BASE: str = "https://api.stripe.com"
    STRIPE_JS_URL: str = "https://js.stripe.com/v3/"
    # Clearinghouse (app/integrations/clearinghouse.py): eligibility (X12 270/271), claims (837P) and
    # remittances (835) as JSON. Unset CLEARINGHOUSE_URL: no clearinghouse. In development and tests
    # the payer simulator (devtools/payer_sandbox) stands in for it; PAYER_ADJUDICATION_DELAY is the
    # simulator's time from a claim to its remittance, passed to it when it is started.
    CLEARINGHOUSE_URL: str | None = None
    CLEARINGHOUSE_API_KEY: str | None = field(default=None, repr=False)
    PAYER_ADJUDICATION_DELAY: timedelta = timedelta(seconds=30)
    # Hybrid timing (issue 15): a signed hybrid encounter's claim is sent at once (True) or waits for
    # billing's "Submit" (False); remittances are polled every REMITTANCE_POLL_INTERVAL; eligibility is
    # checked again ELIGIBILITY_RECHECK_BEFORE the visit (the day before).
    CLAIM_AUTO_SUBMIT: bool = False
    REMITTANCE_POLL_INTERVAL: timedelta = timedelta(seconds=60)
    ELIGIBILITY_RECHECK_BEFORE: timedelta = timedelta(days=1)
    # Provider payouts (issue 16): no money moves to a provider until PAYOUT_HOLD (the refund window)
    # after the visit's money became final; the payout tick (transfers, reversals, the ledger's
    # catch-up) runs with every sweep (SWEEP_INTERVAL); the weekly payout job pays out each provider's
    # available balance on PAYOUT_WEEKDAY (0 = Monday) after PAYOUT_HOUR UTC; the ledger is reconciled
    # with Stripe's balance transactions once a day (the UTC day before, an hour after it ends);
    # disputes are polled every DISPUTE_POLL_INTERVAL (a lost webhook).
    PAYOUT_HOLD: timedelta = timedelta(days=7)
    PAYOUT_WEEKDAY: int = 0
    PAYOUT_HOUR: int = 6
    DISPUTE_POLL_INTERVAL: timedelta = timedelta(minutes=15)
    # GET /admin/metrics also answers `Authorization: Bearer <METRICS_TOKEN>` (Prometheus); unset:
    # an admin's session only. At least 32 characters.
    METRICS_TOKEN: str | None = None
    # Request bodies larger than this (bytes) are answered 413 (app/security_headers.py).
    MAX_CONTENT_LENGTH: int = 1024 * 1024
    # Behind a reverse proxy: werkzeug's ProxyFix arguments, e.g. "x_for=1,x_proto=1" (how many
    # proxies to trust per X-Forwarded-* header). Unset: off (the headers are ignored).
    PROXY_FIX: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def audit_anchor_path(self) -> Path:
        """Where the audit anchors are appended (AUDIT_ANCHOR_PATH, else under the instance path)."""
        return self.AUDIT_ANCHOR_PATH or self.INSTANCE_PATH / "audit_anchors.jsonl"

    @property
    def runtime_database_url(self) -> str | None:
        """The URL the app's engine connects with: DATABASE_APP_URL, else DATABASE_URL."""
        return self.DATABASE_APP_URL or self.DATABASE_URL

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        mode = env.get("APP_ENV", "development")
        if mode not in MODES:
            raise ConfigError(f"APP_ENV must be one of {', '.join(MODES)}; got {mode!r}")
        values = dict(
            APP_ENV=mode,
            SECRET_KEY=env.get("SECRET_KEY") or None,
            DATABASE_URL=env.get("DATABASE_URL") or None,
            DATABASE_APP_URL=env.get("DATABASE_APP_URL") or None,
            REDIS_URL=env.get("REDIS_URL") or None,
            AUDIT_HMAC_KEY=env.get("AUDIT_HMAC_KEY") or None,
            FIELD_KEYS=env.get("FIELD_KEYS") or None,
            FIELD_KEY_ACTIVE=env.get("FIELD_KEY_ACTIVE") or None,
            LOOKUP_HASH_KEY=env.get("LOOKUP_HASH_KEY") or None,
            REDIS_NAMESPACE=env.get("REDIS_NAMESPACE") or "clinic",
            INSTANCE_PATH=Path(env.get("INSTANCE_PATH") or ROOT / "instance"),
            IDLE_LOGOFF_STAFF=_seconds(env.get("IDLE_LOGOFF_STAFF_SECONDS"), 15 * 60),
            IDLE_LOGOFF_PATIENT=_seconds(env.get("IDLE_LOGOFF_PATIENT_SECONDS"), 30 * 60),
            BREAK_GLASS_MINUTES=int(env.get("BREAK_GLASS_MINUTES") or 30),
            SESSION_LIFETIME_STAFF=_seconds(env.get("SESSION_LIFETIME_STAFF_SECONDS"), 12 * 3600),
            SESSION_LIFETIME_PATIENT=_seconds(env.get("SESSION_LIFETIME_PATIENT_SECONDS"), 12 * 3600),
            SESSION_LIFETIME_REMEMBER=_seconds(env.get("SESSION_LIFETIME_REMEMBER_SECONDS"), 30 * 86400),
            MFA_PENDING_TTL=_seconds(env.get("MFA_PENDING_TTL_SECONDS"), 300),
            STEP_UP_MAX_AGE=_seconds(env.get("STEP_UP_MAX_AGE_SECONDS"), 15 * 60),
            MFA_LIMIT_PER_ACCOUNT=env.get("MFA_LIMIT_PER_ACCOUNT") or "5 per minute",
            LOGIN_LIMIT_PER_ACCOUNT=env.get("LOGIN_LIMIT_PER_ACCOUNT") or "5 per minute",
            LOGIN_LIMIT_PER_ADDRESS=env.get("LOGIN_LIMIT_PER_ADDRESS") or "20 per minute",
            SWEEP_INTERVAL=_seconds(env.get("SWEEP_INTERVAL_SECONDS"), 60),
            AUDIT_LINK_INTERVAL=_seconds(env.get("AUDIT_LINK_INTERVAL_SECONDS"), 5),
            AUDIT_ANCHOR_PATH=Path(env["AUDIT_ANCHOR_PATH"]) if env.get("AUDIT_ANCHOR_PATH") else None,
            AUDIT_ANCHOR_INTERVAL=_seconds(env.get("AUDIT_ANCHOR_INTERVAL_SECONDS"), 60),
            AUDIT_ANCHOR_ROWS=max(1, int(env.get("AUDIT_ANCHOR_ROWS") or 1000)),
            WORKER_PROCESSES=max(1, int(env.get("WORKER_PROCESSES") or 1)),
            WORKER_BACKOFF_MAX=_seconds(env.get("WORKER_BACKOFF_MAX_SECONDS"), 30),
            JOB_RETRY_DELAYS=tuple(int(float(x)) for x in
                                   (env.get("JOB_RETRY_DELAYS_SECONDS") or "5,30,120").split(",")),
            HOLD_TTL=_seconds(env.get("HOLD_TTL_SECONDS"), 600),
            HOLD_EXTENSION=_seconds(env.get("HOLD_EXTENSION_SECONDS"), 300),
            RELEASE_BEFORE_START=_seconds(env.get("RELEASE_BEFORE_START_SECONDS"), 300),
            MAX_HOLDS_PER_PATIENT=int(env.get("MAX_HOLDS_PER_PATIENT") or 1),
            HOLDS_PER_HOUR=int(env.get("HOLDS_PER_HOUR") or 12),
            POLL_INTERVAL=_seconds(env.get("POLL_INTERVAL_SECONDS"), 30),
            POLL_GRACE=_seconds(env.get("POLL_GRACE_SECONDS"), 300),
            PAYMENT_QUIET=_seconds(env.get("PAYMENT_QUIET_SECONDS"), 120),
            TELEHEALTH_BASE_URL=env.get("TELEHEALTH_BASE_URL") or None,
            VISIT_OPENS_BEFORE=_seconds(env.get("VISIT_OPENS_BEFORE_SECONDS"), 600),
            TWILIO_ACCOUNT_SID=env.get("TWILIO_ACCOUNT_SID") or None,
            TWILIO_AUTH_TOKEN=env.get("TWILIO_AUTH_TOKEN") or None,
            TWILIO_FROM_NUMBER=env.get("TWILIO_FROM_NUMBER") or None,
            SMTP_HOST=env.get("SMTP_HOST") or None,
            SMTP_PORT=int(env.get("SMTP_PORT") or 587),
            SMTP_USERNAME=env.get("SMTP_USERNAME") or None,
            SMTP_PASSWORD=env.get("SMTP_PASSWORD") or None,
            SMTP_FROM=env.get("SMTP_FROM") or "Clinic Portal <no-reply@clinic.example>",
            SMTP_STARTTLS=(env.get("SMTP_STARTTLS") or "1") not in ("0", "false", "no"),
            PUBLIC_BASE_URL=env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000",
            REMINDER_OFFSETS=tuple(timedelta(seconds=float(x)) for x in
                                   (env.get("REMINDER_OFFSETS_SECONDS") or "86400,3600").split(",")),
            RETRY_LINK_TTL=_seconds(env.get("RETRY_LINK_TTL_SECONDS"), 1800),
            FHIR_TOKEN_TTL=_seconds(env.get("FHIR_TOKEN_TTL_SECONDS"), 300),
            FHIR_PAGE_SIZE=int(env.get("FHIR_PAGE_SIZE") or 20),
            FHIR_PAGE_MAX=int(env.get("FHIR_PAGE_MAX") or 100),
            WAITLIST_OFFER_TTL=_seconds(env.get("WAITLIST_OFFER_SECONDS"), 900),
            WAITLIST_OFFER_FANOUT=int(env.get("WAITLIST_OFFER_FANOUT") or 1),
            DECLINE_MESSAGE_GRACE=_seconds(env.get("DECLINE_MESSAGE_GRACE_SECONDS"), 120),
            T_WINDOW=_seconds(env.get("T_WINDOW_SECONDS"), 1800),
            VISIT_RETRY_SCHEDULE=tuple(timedelta(seconds=float(x)) for x in
                                       (env.get("VISIT_RETRY_SCHEDULE_SECONDS") or "86400,259200,604800").split(",")),
            VISIT_LINK_TTL=_seconds(env.get("VISIT_LINK_TTL_SECONDS"), 14 * 86400),
            PLAN_INTERVAL=_seconds(env.get("PLAN_INTERVAL_SECONDS"), 30 * 86400),
            SEND_LEASE=_seconds(env.get("SEND_LEASE_SECONDS"), 900),
            SMTP_TIMEOUT=float(env.get("SMTP_TIMEOUT_SECONDS") or 10),
            SMTP_DATA_TIMEOUT=float(env.get("SMTP_DATA_TIMEOUT_SECONDS") or 120),
            SEND_BATCH_SIZE=int(env.get("SEND_BATCH_SIZE") or 100),
            STRIPE_SECRET_KEY=env.get("STRIPE_SECRET_KEY") or None,
            STRIPE_PUBLISHABLE_KEY=env.get("STRIPE_PUBLISHABLE_KEY") or None,
            STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET") or None,
            STRIPE_API_BASE=env.get("STRIPE_API_BASE") or "https://api.stripe.com",
            STRIPE_JS_URL=env.get("STRIPE_JS_URL") or "https://js.stripe.com/v3/",
            CLEARINGHOUSE_URL=env.get("CLEARINGHOUSE_URL") or None,
            CLEARINGHOUSE_API_KEY=env.get("CLEARINGHOUSE_API_KEY") or None,
            PAYER_ADJUDICATION_DELAY=_seconds(env.get("PAYER_ADJUDICATION_DELAY_SECONDS"), 30),
            CLAIM_AUTO_SUBMIT=(env.get("CLAIM_AUTO_SUBMIT") or "").lower() in ("1", "true", "yes", "on"),
            REMITTANCE_POLL_INTERVAL=_seconds(env.get("REMITTANCE_POLL_INTERVAL_SECONDS"), 60),
            ELIGIBILITY_RECHECK_BEFORE=_seconds(env.get("ELIGIBILITY_RECHECK_BEFORE_SECONDS"), 86400),
            PAYOUT_HOLD=_seconds(env.get("PAYOUT_HOLD_SECONDS"), 7 * 86400),
            PAYOUT_WEEKDAY=int(env.get("PAYOUT_WEEKDAY") or 0),
            PAYOUT_HOUR=int(env.get("PAYOUT_HOUR") or 6),
            DISPUTE_POLL_INTERVAL=_seconds(env.get("DISPUTE_POLL_INTERVAL_SECONDS"), 900),
            METRICS_TOKEN=env.get("METRICS_TOKEN") or None,
            MAX_CONTENT_LENGTH=int(env.get("MAX_CONTENT_LENGTH") or 1024 * 1024),
            PROXY_FIX=env.get("PROXY_FIX") or None,
        )
        values.update(overrides)
        return cls(**values).checked()

    def checked(self) -> "Settings":
        if self.METRICS_TOKEN is not None and len(self.METRICS_TOKEN) < 32:
            raise ConfigError("METRICS_TOKEN must be at least 32 characters (or unset).")
        from app.security_headers import parse_proxy_fix

        parse_proxy_fix(self.PROXY_FIX)            # a malformed value stops the start-up, named
        if self.is_production:
            missing = [name for name in PRODUCTION_SECRETS if not getattr(self, name)]
            if missing:
                raise ConfigError(
                    "Refusing to start in production without: " + ", ".join(missing)
                    + ". Set them in the environment."
                )
            if self.STRIPE_SECRET_KEY.startswith("sk_test_sandbox"):
                raise ConfigError("STRIPE_SECRET_KEY is the offline sandbox's key; production needs Stripe's.")
            if (self.CLEARINGHOUSE_API_KEY or "").startswith("payer_test_sandbox"):
                raise ConfigError("CLEARINGHOUSE_API_KEY is the payer simulator's key; production needs a "
                                  "clearinghouse's.")
            self._check_field_keys()
            return self
        # Development and test: stable throwaway secrets, never used in production.
        filled = {}
        if not self.SECRET_KEY:
            filled["SECRET_KEY"] = _instance_secret(self.INSTANCE_PATH, "secret_key")
        if not self.AUDIT_HMAC_KEY:
            filled["AUDIT_HMAC_KEY"] = _instance_secret(self.INSTANCE_PATH, "audit_hmac_key")
        if not self.FIELD_KEYS or not self.LOOKUP_HASH_KEY:
            from app.services.field_crypto import development_keys

            keys, active, lookup = development_keys(filled.get("SECRET_KEY") or self.SECRET_KEY)
            if not self.FIELD_KEYS:
                filled.update(FIELD_KEYS=keys, FIELD_KEY_ACTIVE=self.FIELD_KEY_ACTIVE or active)
            if not self.LOOKUP_HASH_KEY:
                filled["LOOKUP_HASH_KEY"] = lookup
        result = replace(self, **filled) if filled else self
        result._check_field_keys()
        return result

    def _check_field_keys(self) -> None:
        from app.services.field_crypto import FieldKeyError, keyring_from_settings

        if self.LOOKUP_HASH_KEY is not None and len(self.LOOKUP_HASH_KEY) < 32:
            raise ConfigError("LOOKUP_HASH_KEY must be at least 32 characters.")
        try:
            keyring_from_settings(self)
        except FieldKeyError as error:
            raise ConfigError(str(error)) from None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _instance_secret(instance: Path, name: str) -> str:
    """A random secret kept in instance/ so dev restarts keep sessions and the audit chain."""
    path = instance / f".{name}"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        path.write_text(value)
        path.chmod(0o600)
        return value
