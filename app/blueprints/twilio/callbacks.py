"""What Twilio's callbacks change: plain functions (session in, no request), called by the views."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Notification
from app.services import audit
from app.services.audit import Actor

# Twilio's keywords (https://help.twilio.com/articles/223134027).
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
START_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}

TWILIO = Actor.system("webhook")


def keyword(body: str | None) -> str:
    words = (body or "").strip().split()
    return words[0].upper().strip(".!") if words else ""


def apply_status(session: Session, *, message_sid: str, status: str, error_code: str | None,
                 now: datetime) -> Notification | None:
    """delivered / failed / undelivered update the row; sent, queued and the like leave it."""
    notification = session.scalar(select(Notification).where(Notification.provider_message_id == message_sid)
                                  .with_for_update())
    if notification is None:
        return None
    status = (status or "").lower()
    action = {"delivered": "deliver", "failed": "fail", "undelivered": "fail"}.get(status)
    if action is None or not notification.can(action):      # sent/queued/...; or late, or a repeat
        return None
    notification.transition(action)
    if action == "deliver":
        notification.delivered_at, notification.error = now, None
    else:
        notification.error = f"twilio {status}" + (f": error {error_code}" if error_code else "")
    audit.record(session, actor=TWILIO, action=f"notification.{notification.status}",
                 appointment_id=notification.appointment_id, subject_user_id=notification.user_id,
                 details={"notification_id": notification.id, "error_code": error_code})
    return notification
