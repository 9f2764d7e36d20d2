"""FHIR API clients (issue 17): the OAuth2 client-credentials grant and SMART Backend Services scopes.

An admin creates a client (``create_client``: the secret is returned once and only its argon2 hash
is kept) and may revoke it. A client trades ``client_id`` + secret for a bearer token
(``issue_token``); the token is 32 random bytes, stored as its SHA-256 only, with the granted scopes
and an expiry (FHIR_TOKEN_TTL). ``authenticate`` finds the live token for a bearer value, or raises
``InvalidToken``; ``allows(scopes, resource_type)`` answers whether ``system/<Type>.read`` (or
``system/*.read``) is granted.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import FhirClient, FhirToken
from app.services import DomainError, accounts, audit
from app.services.audit import Actor

SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,39})\.(read|\*)$")
ACTOR_TYPE = "fhir_client"
# A dummy hash, verified against when the client id is unknown, so both answers take as long.
_DUMMY = None


class InvalidClient(DomainError):
    """Unknown client, wrong secret or revoked (the token endpoint answers 401 invalid_client)."""


class InvalidScope(DomainError):
    pass


class InvalidToken(DomainError):
    """No such token, or it expired, or its client was revoked."""


def actor_of(client: FhirClient) -> Actor:
    """Who an audit row names for a client's reads: the client (not a user)."""
    return Actor(ACTOR_TYPE, client.id, None)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str | None) -> list[str]:
    """Space-separated SMART scopes; raises InvalidScope naming the first unknown one."""
    scopes = []
    for scope in (text or "").split():
        if not SCOPE.match(scope):
            raise InvalidScope(f"unsupported scope {scope[:60]!r}: use system/<Type>.read or system/*.read")
        if scope not in scopes:
            scopes.append(scope)
    return scopes


def allows(scopes, resource_type: str) -> bool:
    for scope in scopes or ():
        match = SCOPE.match(scope)
        if match and match.group(1) in ("*", resource_type):
            return True
    return False


@dataclass(frozen=True)
class NewClient:
    client: FhirClient
    secret: str            # shown once


def create_client(session: Session, *, name: str, scopes: list[str], actor: Actor,
                  created_by_id: int | None = None) -> NewClient:
    name = (name or "").strip()[:120]
    if not name:
        raise DomainError("Give the client a name.")
    scopes = parse_scopes(" ".join(scopes))
    if not scopes:
        raise InvalidScope("Grant at least one scope.")
    secret = secrets.token_urlsafe(32)
    client = FhirClient(client_id=f"fhir-{secrets.token_hex(8)}", name=name,
                        secret_hash=accounts.hash_password(secret), scopes=scopes, active=True,
                        created_by_id=created_by_id)
    session.add(client)
    session.flush()
    audit.record(session, actor=actor, action="fhir.client_created",
                 details={"fhir_client_id": client.id, "scopes": scopes})
    return NewClient(client, secret)


def revoke_client(session: Session, client: FhirClient, *, actor: Actor, now: datetime) -> None:
    if not client.active:
        return
    client.active = False
    client.revoked_at = now
    session.execute(delete(FhirToken).where(FhirToken.client_id == client.id))
    audit.record(session, actor=actor, action="fhir.client_revoked", details={"fhir_client_id": client.id},
                 at=now)


def find_client(session: Session, client_id: str) -> FhirClient | None:
    if not client_id or len(client_id) > 64:
        return None
    return session.scalar(select(FhirClient).where(FhirClient.client_id == client_id))


def _verify(secret_hash: str, secret: str) -> bool:
    try:
        return accounts._hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scopes: list[str]


def issue_token(session: Session, *, client_id: str, secret: str, requested_scope: str | None,
                now: datetime, ttl: timedelta) -> IssuedToken:
    """The client-credentials grant. Scopes: those requested (each must be granted), else all granted."""
    global _DUMMY
    client = find_client(session, client_id)
    if client is None:
        if _DUMMY is None:
            _DUMMY = accounts.hash_password(secrets.token_urlsafe(16))
        _verify(_DUMMY, secret or "")
        raise InvalidClient("unknown client or wrong secret")
    if not secret or len(secret) > 256 or not _verify(client.secret_hash, secret) or not client.active:
        raise InvalidClient("unknown client or wrong secret")
    granted = list(client.scopes or [])
    if requested_scope:
        wanted = parse_scopes(requested_scope)
        refused = [s for s in wanted if s not in granted and not _covered(s, granted)]
        if refused:
            raise InvalidScope(f"scope not granted to this client: {refused[0]}")
        scopes = wanted
    else:
        scopes = granted
    token = secrets.token_urlsafe(32)
    session.add(FhirToken(client_id=client.id, token_hash=token_hash(token), scopes=scopes, issued_at=now,
                          expires_at=now + ttl))
    # Expired tokens of this client are dropped as it signs in again (the table stays small).
    session.execute(delete(FhirToken).where(FhirToken.client_id == client.id, FhirToken.expires_at < now))
    audit.record(session, actor=actor_of(client), action="fhir.token_issued", details={"scopes": scopes}, at=now)
    return IssuedToken(token, int(ttl.total_seconds()), scopes)


def _covered(scope: str, granted: list[str]) -> bool:
    match = SCOPE.match(scope)
    return bool(match) and match.group(1) != "*" and allows(granted, match.group(1))


def authenticate(session: Session, bearer: str | None, *, now: datetime) -> FhirToken:
    if not bearer or len(bearer) > 200:
        raise InvalidToken("no token")
    found = session.scalar(select(FhirToken).where(FhirToken.token_hash == token_hash(bearer)))
    if found is None or not hmac.compare_digest(found.token_hash, token_hash(bearer)):
        raise InvalidToken("invalid token")
    if found.expires_at <= now:
        raise InvalidToken("token expired")
    if not found.client.active:
        raise InvalidToken("client revoked")
    return found
