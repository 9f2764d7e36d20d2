"""Field-level encryption of PHI at rest, and keyed look-up hashes.

A value a database dump must not reveal (a phone number, a cancel or refund reason, an audit
row's reason, a TOTP secret; later a date of birth, an insurance member id, a note's text) is
stored as ``v1:<key id>:<base64url(nonce | ciphertext | tag)>``: AES-256-GCM with a random
96-bit nonce, and as associated data the column it belongs to (``"users.phone"``), so a value
copied into another column does not decrypt. Models do this transparently with
``app.models.types.EncryptedText("<table>.<column>")``.

Keys come from the settings (``FIELD_KEYS``: ``kid:base64-32-bytes,...``; ``FIELD_KEY_ACTIVE``):
the active key encrypts every new value, and every listed key decrypts what it once encrypted,
so a retired key stays listed until ``flask crypto reencrypt`` has moved the mutable columns to
the active key. Rows that are immutable by design (audit rows; signed notes later) keep the key
id they were written with and are never re-encrypted: their HMACs and signatures are taken over
the plaintext, so they verify whatever key encrypted the stored bytes.

A value without the ``v1:`` prefix is a legacy plaintext value (written before migration 0009,
or an audit row, which is never rewritten) and is returned as it is.

Look-ups cannot use a randomized ciphertext, so a column someone searches by (a phone number for
Twilio's STOP, an email for sign-in) has a keyed hash beside it: ``lookup_hash(kind, value)``,
HMAC-SHA256 with ``LOOKUP_HASH_KEY`` over the normalized plaintext. The key never rotates with
the field keys (it would need every hash recomputed); keep it as secret as they are.

Keys are never logged and never part of an error message.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class FieldKeyError(ValueError):
    """The key settings are malformed (the message names the setting, never a key)."""


class DecryptionError(Exception):
    """A stored value could not be decrypted: an unknown key id, another column's value, or
    altered bytes. Never returned silently as garbage."""


@dataclass(frozen=True)
class Keyring:
    keys: dict = field(repr=False)          # kid -> 32 raw bytes
    active: str
    lookup_key: bytes = field(repr=False)

    def __post_init__(self):
        if self.active not in self.keys:
            raise FieldKeyError(f"FIELD_KEY_ACTIVE {self.active!r} is not one of the FIELD_KEYS ids")
        for kid, key in self.keys.items():
            if not KID.fullmatch(kid) or len(key) != KEY_BYTES:
                raise FieldKeyError(f"FIELD_KEYS: key {kid!r} must be an id of letters, digits, '-' or '_' "
                                    f"and {KEY_BYTES} bytes")
        if len(self.lookup_key) < 16:
            raise FieldKeyError("LOOKUP_HASH_KEY is too short")
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys.items()})

    def __repr__(self) -> str:          # ids only, never a key
        return f"<Keyring active={self.active} keys={sorted(self.keys)}>"

    # -- values ---------------------------------------------------------------------------------

    def encrypt(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active].encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        return f"{PREFIX}:{self.active}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, value: str, *, context: str) -> str:
        if not is_encrypted(value):
            return value                                  # legacy plaintext
        _, kid, blob = value.split(":", 2)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(f"{context}: the value was encrypted with key id {kid!r}, which is not "
                                  "in FIELD_KEYS (a retired key must stay listed until re-encryption)")
        try:
            raw = base64.urlsafe_b64decode(blob.encode("ascii"))
            if len(raw) < NONCE_BYTES + 16:
                raise ValueError("too short")
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error, UnicodeError):
            raise DecryptionError(f"{context}: the stored value does not decrypt with key {kid!r} "
                                  "(altered, or copied from another column)") from None

    def lookup_hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 (hex) of a normalized plaintext, for equality look-ups; ``kind`` separates
        the value spaces (an email and a phone never share a hash)."""
        return hmac.new(self.lookup_key, f"{kind}:{value}".encode("utf-8"), hashlib.sha256).hexdigest()


def is_encrypted(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX + ":") and value.count(":") >= 2


def key_id(value: str | None) -> str | None:
    """The key id stored beside an encrypted value; None for NULL or a legacy plaintext value."""
    return value.split(":", 2)[1] if is_encrypted(value) else None


# -- keys from the settings ---------------------------------------------------------------------

def parse_keys(spec: str) -> dict[str, bytes]:
    """``kid:base64,kid:base64`` (standard or URL-safe base64 of 32 bytes) -> {kid: bytes}."""
    keys: dict[str, bytes] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        kid = kid.strip()
        if not sep or not KID.fullmatch(kid):
            raise FieldKeyError("FIELD_KEYS must be 'id:base64-key' pairs separated by commas "
                                "(ids of letters, digits, '-' or '_')")
        try:
            key = base64.b64decode(encoded.strip().replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise FieldKeyError(f"FIELD_KEYS: key {kid!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise FieldKeyError(f"FIELD_KEYS: key {kid!r} must be {KEY_BYTES} bytes (base64 of 32 random "
                                f"bytes, e.g. `python -c \"import os,base64;print(base64.b64encode(os.urandom(32)).decode())\"`)")
        if kid in keys:
            raise FieldKeyError(f"FIELD_KEYS: key id {kid!r} is listed twice")
        keys[kid] = key
    if not keys:
        raise FieldKeyError("FIELD_KEYS lists no key")
    return keys


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def derive(secret: str, purpose: str) -> bytes:
    """32 bytes derived from a secret (HKDF-SHA256): development and test keys come from SECRET_KEY."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=b"clinic-portal field crypto",
                info=purpose.encode()).derive(secret.encode("utf-8"))


def development_keys(secret_key: str) -> tuple[str, str, str]:
    """(FIELD_KEYS, FIELD_KEY_ACTIVE, LOOKUP_HASH_KEY) derived from SECRET_KEY, for development and
    tests only (production must set its own). The key id carries a fingerprint, so a value written
    under another SECRET_KEY says "unknown key id" instead of failing as if altered."""
    key = derive(secret_key, "field key 1")
    kid = "dev-" + hashlib.sha256(key).hexdigest()[:8]
    return f"{kid}:{encode_key(key)}", kid, derive(secret_key, "lookup hash key").hex()


def keyring_from_settings(settings) -> Keyring:
    keys = parse_keys(settings.FIELD_KEYS or "")
    active = settings.FIELD_KEY_ACTIVE or (next(iter(keys)) if len(keys) == 1 else None)
    if active is None:
        raise FieldKeyError("FIELD_KEY_ACTIVE must name one of the FIELD_KEYS ids when there are several")
    return Keyring(keys, active, (settings.LOOKUP_HASH_KEY or "").encode("utf-8"))


# -- the keyring in use -------------------------------------------------------------------------

EXTENSION = "field_crypto"
_process_keyring: Keyring | None = None


def use_keyring(keyring: Keyring) -> None:
    """Set this process's keyring (create_app does it from the settings, and also keeps it in
    ``app.extensions``, which wins inside that app's context: two apps in one process, as in the
    tests, each use their own keys)."""
    global _process_keyring
    _process_keyring = keyring


def current() -> Keyring:
    try:
        from flask import current_app, has_app_context   # the app's own keyring, when there is one

        if has_app_context():
            keyring = current_app.extensions.get(EXTENSION)
            if keyring is not None:
                return keyring
    except ImportError:                                    # pragma: no cover
        pass
    if _process_keyring is None:
        raise RuntimeError("field_crypto: no keyring configured (create_app sets it from the settings)")
    return _process_keyring


def encrypt(plaintext: str, *, context: str) -> str:
    return current().encrypt(plaintext, context=context)


def decrypt(value: str, *, context: str) -> str:
    return current().decrypt(value, context=context)


def phone_hash(phone: str | None) -> str | None:
    """The look-up hash of an E.164 number (as stored: accounts.normalize_phone's form)."""
    return current().lookup_hash("phone", phone.strip()) if phone else None


def email_hash(email: str | None) -> str | None:
    """The look-up hash of an email (lower-cased and stripped, as accounts.normalize_email)."""
    return current().lookup_hash("email", email.strip().lower()) if email else None


# -- key rotation: moving mutable columns to the active key ---------------------------------------

# Tables whose rows are immutable by design: never re-encrypted (their HMACs and signatures cover
# the plaintext, and the database refuses UPDATE on them): the audit trail, addenda and typed-name
# consents (append-only triggers). Signed encounters are immutable row by row: the rows the database
# still lets change are named by IMMUTABLE_ROWS' condition (a signed note keeps its key for good).
IMMUTABLE_TABLES = frozenset({"audit_events", "encounter_addenda", "intake_consents"})
MUTABLE_ROWS = {"encounters": "status <> 'signed'"}


def encrypted_columns(*, include_immutable: bool = False) -> list:
    """Every column of the models typed EncryptedText, as (table, column), in a stable order."""
    from app.extensions import db
    from app.models.types import EncryptedText
    import app.models  # noqa: F401  (every model registered)

    found = []
    for table in sorted(db.metadata.tables.values(), key=lambda t: t.name):
        if table.name in IMMUTABLE_TABLES and not include_immutable:
            continue
        found += [(table, column) for column in table.columns if isinstance(column.type, EncryptedText)]
    return found


def reencrypt_batch(session, *, limit: int = 500, keyring: Keyring | None = None) -> dict[str, int]:
    """Re-encrypt up to ``limit`` values per mutable encrypted column that are not under the active
    key (an older key's, or legacy plaintext) with the active key; returns {"table.column": count}.
    Each UPDATE is a compare-and-swap on the stored value (a concurrent write wins). The caller
    commits and calls again until every count is 0. Immutable tables are never touched."""
    from sqlalchemy import text

    keyring = keyring or current()
    done = {}
    for table, column in encrypted_columns():
        (pk,) = table.primary_key.columns
        context, name = column.type.context, column.name
        rows = session.execute(text(
            f"SELECT {pk.name}, {name} FROM {table.name} WHERE {name} IS NOT NULL "
            f"AND left({name}, :n) <> :prefix AND {MUTABLE_ROWS.get(table.name, 'true')} "
            f"ORDER BY {pk.name} LIMIT :limit"),
            {"n": len(f"{PREFIX}:{keyring.active}:"), "prefix": f"{PREFIX}:{keyring.active}:",
             "limit": limit}).all()
        for key, stored in rows:
            fresh = keyring.encrypt(keyring.decrypt(stored, context=context), context=context)
            session.execute(text(f"UPDATE {table.name} SET {name} = :fresh WHERE {pk.name} = :key "
                                 f"AND {name} = :stored"), {"fresh": fresh, "key": key, "stored": stored})
        done[context] = len(rows)
    return done


def key_usage(session) -> dict[str, dict[str, int]]:
    """{"table.column": {key id or "plaintext": values}} for every encrypted column, immutable ones
    included. A retired key may leave FIELD_KEYS only when no row names it, audit rows included
    (they keep theirs for good, so in practice an old key stays listed, decrypt-only)."""
    from sqlalchemy import text

    usage = {}
    for table, column in encrypted_columns(include_immutable=True):
        name = column.name
        rows = session.execute(text(
            f"SELECT CASE WHEN left({name}, 3) = 'v1:' THEN split_part({name}, ':', 2) ELSE 'plaintext' END, "
            f"count(*) FROM {table.name} WHERE {name} IS NOT NULL GROUP BY 1 ORDER BY 1")).all()
        usage[column.type.context] = {kid: count for kid, count in rows}
    return usage
