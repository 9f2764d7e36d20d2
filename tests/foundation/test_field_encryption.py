"""PHI encrypted at rest, field by field (app/services/field_crypto.py, app/models/types.py EncryptedText).

A database dump of a seeded clinic shows no phone number, no cancel or refund reason, no audit
reason and no MFA secret; values are AES-GCM bound to their column, a tampered or moved value is
refused with a clear error; a new key encrypts new values while retired keys still decrypt, audit
rows keep their key id, and `flask crypto reencrypt` moves the mutable columns to the new key;
look-ups by phone and email go through keyed hashes."""
import base64
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from app.models import Appointment, AuditEvent, Charge, PaymentAttempt, Refund, SmsOptOut, User
from app.services import accounts, audit, booking, field_crypto, phone, refunds
from app.services.audit import Actor
from app.services.field_crypto import DecryptionError, Keyring
from app.services.seed import seed_demo
from app.settings import ConfigError, Settings
from tests.helpers.messages import AUTH_TOKEN, PUBLIC_BASE_URL

CANCEL_REASON = "Panic attacks before the visit, will call to rebook"
CLINICAL_REASON = "Visit cut short: patient had a migraine and left early"
AUDIT_REASON = "Covering for Dr. Okafor: reviewing chest pain follow-up"
SECOND_PHONE = "+15555550177"


def _key() -> bytes:
    return os.urandom(32)


def stored(raw_conn, table: str, column: str, where: str = "TRUE") -> list:
    """Values as the database holds them (the owner's connection: no decryption)."""
    return [row[0] for row in raw_conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE " + where + " ORDER BY 1").format(
            sql.Identifier(column), sql.Identifier(table))).fetchall()]


def dump(raw_conn) -> str:
    """Every table's rows as text, as `COPY ... TO STDOUT` gives them to anyone holding a dump."""
    tables = [row[0] for row in raw_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()]
    assert "users" in tables and "audit_events" in tables
    out = []
    with raw_conn.cursor() as cursor:
        for table in tables:
            with cursor.copy(sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(table))) as copy:
                out += [bytes(block) for block in copy]
    return b"".join(out).decode("utf-8")


def _appointment(db, factories, patient, *, start):
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    appointment = Appointment(patient_id=patient.patient.id, provider_id=provider.id, type_id=visit.id,
                              status="confirmed", starts_at=start, ends_at=start + timedelta(minutes=30),
                              blocked_start=start, blocked_end=start + timedelta(minutes=30),
                              price_cents=visit.price_cents, payment_timing=visit.payment_timing,
                              modality=visit.modality, confirmed_at=start - timedelta(days=5))
    db.add(appointment)
    db.commit()
    return appointment


def _captured_charge(db, appointment):
    charge = Charge(appointment_id=appointment.id, purpose="deposit", amount_cents=12500, status="captured",
                    amount_captured_cents=12500)
    db.add(charge)
    db.flush()
    db.add(PaymentAttempt(charge_id=charge.id, number=1, amount_cents=12500, status="succeeded",
                          amount_captured_cents=12500, captured_at=datetime.now(timezone.utc)))
    db.commit()
    return charge


# -- the dump -----------------------------------------------------------------------------------

def test_a_dump_of_a_seeded_clinic_shows_no_phone_reason_or_second_factor(app, db, factories, raw_conn):
    now = datetime.now(timezone.utc)
    seed_demo(db)
    db.commit()
    patient = accounts.find_by_email(db, "patient@example.com")
    provider_user = accounts.find_by_email(db, "provider@example.com")
    other = factories.user("patient", phone=SECOND_PHONE)
    admin = accounts.find_by_email(db, "admin@example.com")
    secret = factories.enrol(admin)                                        # a staff second factor

    # An SMS code to the patient's number (a phone_verifications row and an SMS notification).
    phone.send_code(db, user=patient, actor=Actor.of(patient), now=now, ttl=timedelta(minutes=10),
                    secret_key=app.config["SECRET_KEY"])
    # STOP from the other patient's number.
    phone.set_opt_out(db, phone=SECOND_PHONE, opted_out=True, actor=Actor.system("twilio"))
    db.commit()
    # A visit canceled with a reason; a refund with its clinical reason; a break-glass-like reason.
    appointment = _appointment(db, factories, patient, start=now + timedelta(days=3))
    booking.cancel(db, appointment, actor=Actor.of(patient), now=now, reason=CANCEL_REASON, by_user_id=patient.id)
    db.commit()
    charge = _captured_charge(db, appointment)
    refunds.open_refund(db, charge=charge, amount_cents=2500, stripe_reason="requested_by_customer",
                        clinical_reason=CLINICAL_REASON, policy="billing", authorized_by=None,
                        actor=Actor.system("test"), now=now)
    audit.record(db, actor=Actor("user", provider_user.id, "provider"), action="patient.break_glass",
                 patient_id=patient.patient.id, reason=AUDIT_REASON)
    db.commit()
    audit.link_all(db)

    # What the app reads is the plaintext...
    db.expire_all()
    assert db.get(User, patient.id).phone == "+15555550101"
    assert db.get(Appointment, appointment.id).cancel_reason == CANCEL_REASON
    assert db.scalar(select(Refund.clinical_reason)) == CLINICAL_REASON
    assert CLINICAL_REASON in [e.reason for e in db.scalars(select(AuditEvent))]
    sms = [n for n in patient_messages(db, patient.id) if n.channel == "sms"]
    assert [n.recipient for n in sms] == ["+15555550101"]
    assert audit.verify(db, key=app.config["SETTINGS"].AUDIT_HMAC_KEY).ok     # HMACs over the plaintext

    # ...what a dump holds is not.
    text = dump(raw_conn)
    assert "patient@example.com" in text and "Demo Family Clinic" in text    # the dump has the rows (emails stay readable)
    numbers = ["+15555550101", "+15555550102", SECOND_PHONE]
    for number in numbers:
        for form in (number, number[1:], number[2:]):                      # E.164, digits, national
            assert form not in text, f"{form} in the dump"
    for words in (CANCEL_REASON, CLINICAL_REASON, AUDIT_REASON, secret):
        assert words not in text, f"{words!r} in the dump"
    assert "Panic attacks" not in text and "migraine" not in text
    # It is there, encrypted under the active key, with its key id beside it.
    active = field_crypto.current().active
    assert all(value.startswith(f"v1:{active}:") for value in stored(raw_conn, "users", "phone", "phone IS NOT NULL"))
    assert stored(raw_conn, "sms_opt_outs", "phone_hash") == [field_crypto.phone_hash(SECOND_PHONE)]


def patient_messages(db, user_id):
    from app.models import Notification

    return list(db.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)))


# -- values: round trip, tampering, the wrong column ----------------------------------------------

def test_values_round_trip_and_each_encryption_differs(db, factories, raw_conn):
    user = factories.user("patient", phone="+15555550188")
    first = stored(raw_conn, "users", "phone", f"id = {user.id}")[0]
    user.phone = "+15555550189"
    db.commit()
    user.phone = "+15555550188"
    db.commit()
    again = stored(raw_conn, "users", "phone", f"id = {user.id}")[0]
    assert first != again and first.startswith("v1:") and again.startswith("v1:")   # a fresh nonce each time
    db.expire_all()
    assert db.get(User, user.id).phone == "+15555550188"
    assert field_crypto.key_id(again) == field_crypto.current().active


def test_a_tampered_value_is_refused_with_a_clear_error_not_read_as_garbage(db, factories, raw_conn):
    user = factories.user("patient", phone="+15555550190")
    value = stored(raw_conn, "users", "phone", f"id = {user.id}")[0]
    head, blob = value.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob))
    raw[-1] ^= 0x01                                                          # one bit of the tag
    raw_conn.execute("UPDATE users SET phone = %s WHERE id = %s",
                     (f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}", user.id))
    db.expire_all()
    with pytest.raises(DecryptionError, match=r"users\.phone.*does not decrypt"):
        db.get(User, user.id).phone


def test_a_value_moved_to_another_column_does_not_decrypt(db, factories, raw_conn):
    user = factories.user("patient", phone="+15555550191")
    appointment = _appointment(db, factories, user, start=datetime.now(timezone.utc) + timedelta(days=2))
    raw_conn.execute("UPDATE appointments SET cancel_reason = (SELECT phone FROM users WHERE id = %s) "
                     "WHERE id = %s", (user.id, appointment.id))
    db.expire_all()
    with pytest.raises(DecryptionError, match=r"appointments\.cancel_reason"):
        db.get(Appointment, appointment.id).cancel_reason


def test_legacy_plaintext_values_still_read():
    ring = Keyring({"k1": _key()}, "k1", b"l" * 32)
    assert ring.decrypt("Travelling", context="appointments.cancel_reason") == "Travelling"
    assert ring.decrypt(ring.encrypt("x", context="a.b"), context="a.b") == "x"


def test_an_encrypted_column_cannot_be_compared_in_sql():
    with pytest.raises(TypeError, match="look-up hash"):
        select(User).where(User.phone == "+15555550101")
    select(User).where(User.phone.is_(None), User.phone_hash == "x")       # NULL tests and hashes are fine


# -- key rotation ---------------------------------------------------------------------------------

def test_a_new_key_encrypts_new_values_old_ones_still_read_audit_rows_keep_theirs(app, db, factories, raw_conn,
                                                                                  monkeypatch):
    original = app.extensions[field_crypto.EXTENSION]
    ring_a = Keyring({**original.keys, "keyA": _key()}, "keyA", original.lookup_key)
    monkeypatch.setitem(app.extensions, field_crypto.EXTENSION, ring_a)
    first = factories.user("patient", phone="+15555550192")
    appointment = _appointment(db, factories, first, start=datetime.now(timezone.utc) + timedelta(days=2))
    appointment.cancel_reason = CANCEL_REASON
    audit.record(db, actor=Actor.system("test"), action="test.under_a", reason="written under A")
    db.commit()
    assert {field_crypto.key_id(v) for v in stored(raw_conn, "users", "phone", "phone IS NOT NULL")} == {"keyA"}

    # Key B becomes active; A is retired but stays listed (decrypt only).
    ring_b = Keyring({**ring_a.keys, "keyB": _key()}, "keyB", original.lookup_key)
    monkeypatch.setitem(app.extensions, field_crypto.EXTENSION, ring_b)
    second = factories.user("patient", phone="+15555550193")
    audit.record(db, actor=Actor.system("test"), action="test.under_b", reason="written under B")
    db.commit()
    assert field_crypto.key_id(stored(raw_conn, "users", "phone", f"id = {second.id}")[0]) == "keyB"
    assert field_crypto.key_id(stored(raw_conn, "users", "phone", f"id = {first.id}")[0]) == "keyA"
    db.expire_all()
    assert db.get(User, first.id).phone == "+15555550192"                   # the old value still reads
    assert phone.users_with_phone(db, "+15555550192") == [db.get(User, first.id)]

    # Re-encryption moves the mutable columns to B; audit rows are never rewritten.
    result = app.test_cli_runner().invoke(args=["crypto", "reencrypt", "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert "users.phone: 1 values re-encrypted under keyB" in result.output
    assert {field_crypto.key_id(v) for v in stored(raw_conn, "users", "phone", "phone IS NOT NULL")} == {"keyB"}
    assert {field_crypto.key_id(v) for v in stored(raw_conn, "appointments", "cancel_reason",
                                                   "cancel_reason IS NOT NULL")} == {"keyB"}
    by_action = dict(raw_conn.execute("SELECT action, reason FROM audit_events WHERE action LIKE 'test.%'"))
    assert (field_crypto.key_id(by_action["test.under_a"]), field_crypto.key_id(by_action["test.under_b"])) == (
        "keyA", "keyB")
    db.expire_all()
    assert db.get(Appointment, appointment.id).cancel_reason == CANCEL_REASON
    assert audit.link_all(db) >= 2                                          # both linked: their HMACs match
    assert audit.verify(db, key=app.config["SETTINGS"].AUDIT_HMAC_KEY).ok
    status = app.test_cli_runner().invoke(args=["crypto", "status"])
    assert "audit_events.reason: keyA: 1, keyB: 1" in status.output, status.output

    # Dropping A from the keys would lose the audit row under it: verify names it, it does not crash.
    monkeypatch.setitem(app.extensions, field_crypto.EXTENSION,
                        Keyring({"keyB": ring_b.keys["keyB"]}, "keyB", original.lookup_key))
    broken = audit.verify(db, key=app.config["SETTINGS"].AUDIT_HMAC_KEY)
    assert not broken.ok and "FIELD_KEYS" in broken.problem


def test_rotation_leaves_rows_the_database_keeps_immutable_and_moves_the_rest(app, db, factories, raw_conn,
                                                                               monkeypatch):
    """Signed notes and typed-name consents keep their key (the database refuses to change them);
    an open draft and an intake move to the new key, and re-encryption finishes without an error."""
    from app.models import Encounter, Intake, IntakeConsent

    original = app.extensions[field_crypto.EXTENSION]
    ring_a = Keyring({**original.keys, "keyA": _key()}, "keyA", original.lookup_key)
    monkeypatch.setitem(app.extensions, field_crypto.EXTENSION, ring_a)
    patient = factories.user("patient")
    start = datetime.now(timezone.utc) - timedelta(days=1)
    signed_visit = _appointment(db, factories, patient, start=start)
    open_visit = _appointment(db, factories, patient, start=start - timedelta(days=1))
    encounters = [Encounter(appointment_id=visit.id, patient_id=patient.patient.id, provider_id=visit.provider_id,
                            status="open", subjective="Sore throat for three days", opened_at=start)
                  for visit in (signed_visit, open_visit)]
    intake = Intake(patient_id=patient.patient.id, appointment_type_id=signed_visit.type_id, data='{"reason": "x"}')
    db.add_all(encounters + [intake])
    db.flush()
    db.add(IntakeConsent(intake_id=intake.id, patient_id=patient.patient.id, kind="treatment", wording_version="v1",
                         typed_name="Ana Lima", signed_at=start, signed_by_id=patient.id))
    db.flush()
    signed = encounters[0]
    signed.status, signed.signed_at, signed.signed_by_id, signed.content_hash, signed.total_cents = (
        "signed", start, patient.id, "ab" * 32, 0)
    db.commit()

    monkeypatch.setitem(app.extensions, field_crypto.EXTENSION,
                        Keyring({**ring_a.keys, "keyB": _key()}, "keyB", original.lookup_key))
    result = app.test_cli_runner().invoke(args=["crypto", "reencrypt", "--batch", "10"])
    assert result.exit_code == 0, result.output
    subjective = dict(raw_conn.execute("SELECT status, subjective FROM encounters"))
    assert (field_crypto.key_id(subjective["signed"]), field_crypto.key_id(subjective["open"])) == ("keyA", "keyB")
    assert {field_crypto.key_id(v) for v in stored(raw_conn, "intake_consents", "typed_name", "true")} == {"keyA"}
    assert {field_crypto.key_id(v) for v in stored(raw_conn, "intakes", "data", "true")} == {"keyB"}
    db.expire_all()
    assert db.get(Encounter, encounters[0].id).subjective == "Sore throat for three days"


# -- look-ups by keyed hash ------------------------------------------------------------------------

def test_twilio_stop_finds_a_number_stored_encrypted(app, db, client, factories, raw_conn, monkeypatch):
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                                                        PUBLIC_BASE_URL=PUBLIC_BASE_URL))
    user = factories.user("patient", phone="+15555550194")
    user.phone_verified_at = datetime.now(timezone.utc)
    db.commit()
    assert stored(raw_conn, "users", "phone", f"id = {user.id}")[0].startswith("v1:")
    params = {"MessageSid": "SM" + "c" * 32, "AccountSid": "AC" + "0" * 32, "From": "(555) 555-0194",
              "To": "+15005550006", "Body": "STOP", "NumSegments": "1"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE_URL + "/twilio/inbound", params)
    response = client.post("/twilio/inbound", data=params, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 200
    assert db.get(SmsOptOut, field_crypto.phone_hash("+15555550194")).opted_out is True
    assert "sms.opted_out" in audit.actions_for(db, subject_user_id=user.id)
    assert "5555550194" not in "".join(map(str, raw_conn.execute("SELECT * FROM sms_opt_outs").fetchall()))


def test_sign_in_finds_the_account_by_its_email_hash(db, factories, raw_conn):
    user = factories.user("patient", email="Hash.Me@Example.test")
    digest = stored(raw_conn, "users", "email_hash", f"id = {user.id}")[0]
    assert digest == field_crypto.email_hash("hash.me@example.test") and "hash.me" not in digest
    assert accounts.find_by_email(db, "  HASH.me@example.test ") == user
    with pytest.raises(accounts.EmailTaken):
        accounts.register_patient(db, full_name="Again", email="hash.me@example.test", phone="+15555550195",
                                  timezone_name="UTC", password="quiet-harbor-lantern-9481",
                                  actor=Actor.system("test"))


def test_the_same_number_hashes_the_same_and_different_kinds_never_collide():
    ring = Keyring({"k1": _key()}, "k1", b"l" * 32)
    assert ring.lookup_hash("phone", "+15555550101") == ring.lookup_hash("phone", "+15555550101")
    assert ring.lookup_hash("phone", "x") != ring.lookup_hash("email", "x")
    assert ring.lookup_hash("phone", "x") != Keyring({"k1": _key()}, "k1", b"m" * 32).lookup_hash("phone", "x")


# -- settings --------------------------------------------------------------------------------------

PROD = {"APP_ENV": "production", "SECRET_KEY": "s", "DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r",
        "AUDIT_HMAC_KEY": "k", "STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
        "STRIPE_WEBHOOK_SECRET": "whsec_x"}


def test_production_requires_the_field_keys_and_names_them(tmp_path):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**PROD, "INSTANCE_PATH": str(tmp_path)})
    assert "FIELD_KEYS" in str(refused.value) and "LOOKUP_HASH_KEY" in str(refused.value)


@pytest.mark.parametrize("keys,active,problem", [
    ("k1:not-base64!!", None, "not base64"),
    ("k1:" + base64.b64encode(b"short").decode(), None, "32 bytes"),
    ("k1:{k},k2:{k}", None, "FIELD_KEY_ACTIVE"),
    ("k1:{k}", "k9", "FIELD_KEY_ACTIVE"),
])
def test_malformed_field_keys_are_refused_by_name_without_showing_a_key(tmp_path, keys, active, problem):
    key = base64.b64encode(_key()).decode()
    env = {**PROD, "INSTANCE_PATH": str(tmp_path), "FIELD_KEYS": keys.format(k=key),
           "LOOKUP_HASH_KEY": "l" * 40, **({"FIELD_KEY_ACTIVE": active} if active else {})}
    with pytest.raises(ConfigError, match=problem) as refused:
        Settings.from_env(env)
    assert key not in str(refused.value)


def test_production_with_two_keys_encrypts_with_the_active_one(tmp_path):
    a, b = base64.b64encode(_key()).decode(), base64.b64encode(_key()).decode()
    settings = Settings.from_env({**PROD, "INSTANCE_PATH": str(tmp_path), "FIELD_KEYS": f"old:{a},new:{b}",
                                  "FIELD_KEY_ACTIVE": "new", "LOOKUP_HASH_KEY": "l" * 40})
    ring = field_crypto.keyring_from_settings(settings)
    assert field_crypto.key_id(ring.encrypt("x", context="a.b")) == "new"
    assert a not in repr(settings) and b not in repr(ring) and "l" * 40 not in repr(settings)


def test_development_derives_stable_keys_from_the_secret_key(tmp_path):
    first = Settings(APP_ENV="test", SECRET_KEY="same", INSTANCE_PATH=tmp_path).checked()
    again = Settings(APP_ENV="test", SECRET_KEY="same", INSTANCE_PATH=tmp_path).checked()
    other = Settings(APP_ENV="test", SECRET_KEY="other", INSTANCE_PATH=tmp_path).checked()
    assert (first.FIELD_KEYS, first.LOOKUP_HASH_KEY) == (again.FIELD_KEYS, again.LOOKUP_HASH_KEY)
    assert first.FIELD_KEYS != other.FIELD_KEYS and first.FIELD_KEY_ACTIVE != other.FIELD_KEY_ACTIVE


# -- the migration: existing rows encrypted in place ----------------------------------------------

@pytest.fixture
def legacy_app(database_url, service_urls, stripe_sandbox, tmp_path):
    """An app on a database of its own, migrated to 0008 (before field encryption), as the owner."""
    from sqlalchemy.engine import make_url

    from app import create_app
    from tests.conftest import make_settings, stripe_settings

    admin = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = make_url(database_url).database + "_fieldenc"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    application = create_app(make_settings(url, service_urls["REDIS_URL"], tmp_path, **stripe_settings(stripe_sandbox)))
    try:
        yield application, url.replace("postgresql+psycopg://", "postgresql://", 1)
    finally:
        from app.extensions import db as sqla

        with application.app_context():
            sqla.engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_migration_encrypts_existing_rows_in_place_and_leaves_audit_rows_alone(legacy_app):
    from flask_migrate import downgrade, upgrade

    from app.extensions import db as sqla

    application, url = legacy_app
    key = application.config["SETTINGS"].AUDIT_HMAC_KEY
    with application.app_context():
        upgrade(revision="0008")
    legacy_audit = dict(seq=1, occurred_at=datetime(2026, 11, 1, tzinfo=timezone.utc), actor_type="system",
                        actor_id=None, actor_role=None, action="legacy.event", patient_id=None, appointment_id=None,
                        payment_attempt_id=None, stripe_object_id=None, encounter_id=None, subject_user_id=None,
                        outcome="success", reason=AUDIT_REASON, authorized_by=None, request_id=None, ip=None,
                        details={}, prev_hash=None)
    with psycopg.connect(url, autocommit=True) as conn:
        user_id = conn.execute(
            "INSERT INTO users (email, password_hash, role, full_name, phone, timezone, is_active_account, mfa_secret) "
            "VALUES ('old.patient@example.test', 'x', 'patient', 'Old Patient', '+15555550196', 'UTC', true, "
            "'JBSWY3DPEHPK3PXP') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO phone_verifications (user_id, phone, code_hash, expires_at, attempts) "
                     "VALUES (%s, '+15555550196', 'h', now(), 0)", (user_id,))
        conn.execute("INSERT INTO sms_opt_outs (phone, opted_out) VALUES ('+15555550196', true), "
                     "('+15555550197', true)")
        conn.execute("INSERT INTO notifications (dedupe_key, channel, template, recipient, user_id, context, "
                     "scheduled_for, status, attempts, body) VALUES ('k', 'sms', 'phone_code', '+15555550196', %s, "
                     "'{}', now(), 'sent', 1, 'Your code is 424242')", (user_id,))
        conn.execute("ALTER SEQUENCE audit_events_seq_seq RESTART WITH 2")
        conn.execute("INSERT INTO audit_events (seq, occurred_at, actor_type, action, outcome, reason, details, hash) "
                     "VALUES (1, %s, 'system', 'legacy.event', 'success', %s, '{}', %s)",
                     (legacy_audit["occurred_at"], AUDIT_REASON, audit.compute_hash(key, legacy_audit)))

    with application.app_context():
        upgrade()
        text = dump_url(url)
        for plain in ("+15555550196", "5555550196", "5555550197", "JBSWY3DPEHPK3PXP", "424242"):
            assert plain not in text, plain
        assert AUDIT_REASON in text                                       # the audit row is never rewritten
        user = accounts.find_by_email(sqla.session, "OLD.patient@example.test")
        assert (user.phone, user.mfa_secret) == ("+15555550196", "JBSWY3DPEHPK3PXP")
        assert phone.users_with_phone(sqla.session, "+15555550196") == [user]
        assert sqla.session.get(SmsOptOut, field_crypto.phone_hash("+15555550197")).opted_out is True
        assert audit.verify(sqla.session, key=key).ok                      # the legacy row's HMAC holds
        assert sqla.session.scalar(select(AuditEvent.reason)) == AUDIT_REASON
        sqla.session.remove()

        downgrade(revision="0008")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT phone, mfa_secret FROM users").fetchone() == ("+15555550196", "JBSWY3DPEHPK3PXP")
        assert conn.execute("SELECT recipient, body FROM notifications").fetchone() == (
            "+15555550196", "Your code is 424242")
        # An opt-out is only a hash now: the number comes back for a known account, not otherwise.
        assert conn.execute("SELECT phone FROM sms_opt_outs").fetchall() == [("+15555550196",)]


def dump_url(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return dump(conn)
