"""The video visit: who may join, when, and where the room is.

The room name is random (``secrets.token_urlsafe(16)``: 128 bits), made at
confirmation; its address is shown only to the signed-in patient and provider
of the appointment, through the portal's join link."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Appointment


def may_join(appointment: Appointment, user) -> bool:
    if user.role == "patient":
        return user.patient is not None and appointment.patient_id == user.patient.id
    if user.role == "provider":
        return appointment.provider.user_id == user.id
    return False


def join_state(appointment: Appointment, *, now: datetime, opens_before: timedelta) -> str:
    if appointment.status not in ("confirmed", "checked_in") or not appointment.telehealth_room:
        return "unavailable"
    if now < appointment.starts_at - opens_before:
        return "not_yet"
    if now > appointment.ends_at + timedelta(minutes=30):
        return "over"
    return "open"


def room_url(appointment: Appointment, *, base: str | None, local: str) -> str:
    if base:
        return base.rstrip("/") + "/" + appointment.telehealth_room
    return local


def by_room(session: Session, room: str) -> Appointment | None:
    return session.scalar(select(Appointment).where(Appointment.telehealth_room == room))
