"""The FHIR R4 API's tables (issue 17): its OAuth2 clients, their access tokens and bulk exports.

A ``FhirClient`` is a system (an EHR, a payer) that signs in with the client-credentials grant
(``client_id`` + secret; only an argon2 hash of the secret is kept) and is granted SMART Backend
Services scopes (``system/Patient.read``, ``system/*.read``). ``FhirToken`` rows keep the SHA-256 of
each bearer token, never the token, with its scopes and expiry. A ``FhirExport`` is one ``$export``
request; the job writes one ``FhirExportFile`` (NDJSON, encrypted at rest) per resource type, each
in its own transaction with the export's progress, so a restarted job resumes at the next type.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import EncryptedText, created_at_column

EXPORT_STATUSES = ("queued", "running", "completed", "failed")


class FhirClient(db.Model):
    __tablename__ = "fhir_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list] = mapped_column(JSONB, default=list)          # e.g. ["system/Patient.read"]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at_column()
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<FhirClient {self.id}>"


class FhirToken(db.Model):
    __tablename__ = "fhir_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("fhir_clients.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)    # sha256 hex of the bearer token
    scopes: Mapped[list] = mapped_column(JSONB, default=list)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    client: Mapped[FhirClient] = relationship(lazy="joined")


class FhirExport(db.Model):
    __tablename__ = "fhir_exports"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'completed', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("fhir_clients.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    types: Mapped[list] = mapped_column(JSONB, default=list)           # resource types, in export order
    done_types: Mapped[list] = mapped_column(JSONB, default=list)      # those written so far
    request_url: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    files: Mapped[list["FhirExportFile"]] = relationship(order_by="FhirExportFile.id",
                                                         back_populates="export")

    @property
    def progress_percent(self) -> int:
        if not self.types:
            return 100
        return int(100 * len(self.done_types or []) / len(self.types))


class FhirExportFile(db.Model):
    __tablename__ = "fhir_export_files"
    __table_args__ = (UniqueConstraint("export_id", "resource_type", name="uq_fhir_export_files_export_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    export_id: Mapped[int] = mapped_column(ForeignKey("fhir_exports.id", ondelete="CASCADE"), index=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(EncryptedText("fhir_export_files.content"))   # NDJSON
    created_at: Mapped[datetime] = created_at_column()

    export: Mapped[FhirExport] = relationship(back_populates="files")
