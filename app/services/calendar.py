"""An .ics file for a confirmed appointment (RFC 5545, via icalendar).

It says the minimum: the clinic, the time, where (the clinic's address or the
portal link for a telehealth visit). No diagnosis, no reason for the visit,
no specialty."""
from __future__ import annotations

from datetime import datetime, timezone

from flask_babel import gettext as _
from icalendar import Calendar, Event


def appointment_ics(appointment, *, clinic, url: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//Clinic Portal//appointments//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = Event()
    event.add("uid", f"appointment-{appointment.id}@clinic-portal")
    event.add("dtstamp", datetime.now(timezone.utc))
    event.add("dtstart", appointment.starts_at.astimezone(timezone.utc))
    event.add("dtend", appointment.ends_at.astimezone(timezone.utc))
    # In the current language: the page's, or the message's (force_locale in the renderer).
    event.add("summary", _("Appointment with %(clinic)s", clinic=clinic.name))
    if appointment.modality == "telehealth":
        event.add("location", _("Video visit: join from the portal"))
    elif clinic.address:
        event.add("location", clinic.address)
    details = _("Details and changes: %(url)s", url=url)
    if clinic.phone:
        details += "\n" + _("Questions: %(phone)s", phone=clinic.phone)
    event.add("description", details)
    event.add("url", url)
    event.add("status", "CONFIRMED")
    cal.add_component(event)
    return cal.to_ical()
