"""The basic EMR: one encounter per visit, conflict-safe drafts, diagnoses and lines, signing (priced at
the date of service, hashed, frozen by the database, charged once), addenda, the worklist, the pages."""
from __future__ import annotations

import re
from datetime import date, timedelta

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.models import Addendum, Appointment, AuditEvent, Charge, CollectionCase, Encounter, EncounterLine
from app.services import audit, emr, fees
from tests.emr.conftest import CONSULT_CENTS, FORMS_CENTS, SYSTEM
from tests.helpers.web import csrf_from, login


def _open(db, visit, clock, source="day_view"):
    enc = emr.open_encounter(db, visit.appointment, actor=visit.actor, user=visit.user, now=clock.now(),
                             source=source)
    db.commit()
    return enc


def _documented(db, visit, clock):
    """An open encounter with text, one diagnosis and two lines (consultation + forms x2)."""
    enc = _open(db, visit, clock)
    enc = emr.save_draft(db, enc.id, expected_version=enc.version, actor=visit.actor, now=clock.now(),
                         fields={"subjective": "Sore throat for 3 days.", "assessment": "Viral pharyngitis."})
    emr.add_diagnosis(db, enc.id, "j06.9", actor=visit.actor, now=clock.now())
    emr.add_line(db, enc.id, code_id=visit.codes["LOC-CONSULT"].id, modifier="", units=1, pointers=[1],
                 actor=visit.actor, now=clock.now())
    emr.add_line(db, enc.id, code_id=visit.codes["LOC-FORMS"].id, modifier="", units=2, pointers=["1"],
                 actor=visit.actor, now=clock.now())
    db.commit()
    return emr.get(db, enc.id)


def _signed(db, visit, clock):
    enc = _documented(db, visit, clock)
    enc = emr.sign(db, enc.id, expected_version=enc.version, user=visit.user, actor=visit.actor, now=clock.now())
    db.commit()
    return enc


def _as_app(app):
    """A connection as the app's own database role (the one that owns nothing), like the app's."""
    return psycopg.connect(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
                           .render_as_string(hide_password=False), autocommit=True)


# -- opening --------------------------------------------------------------------------------------

def test_one_encounter_per_visit_and_opening_checks_the_patient_in(db, visit, clock):
    first = _open(db, visit, clock)
    again = _open(db, visit, clock, source="telehealth")
    assert again.id == first.id and again.opened_from == "day_view"
    assert db.scalar(select(func.count(Encounter.id))) == 1
    assert db.get(Appointment, visit.appointment.id).status == "checked_in"
    assert audit.actions_for(db, encounter_id=first.id) == ["encounter.opened"]


def test_a_visit_that_is_not_confirmed_gets_no_encounter(db, visit, clock):
    from app.services import booking

    booking.cancel(db, visit.appointment, actor=SYSTEM, now=clock.now(), reason="Patient asked", by_user_id=None)
    db.commit()
    with pytest.raises(emr.EncounterError, match="confirmed, checked-in or completed"):
        emr.open_encounter(db, visit.appointment, actor=visit.actor, user=visit.user, now=clock.now(),
                           source="day_view")


def test_checking_in_on_the_day_view_opens_the_encounter(db, client, forms, visit, clock):
    login(client, visit.user.email)
    response = forms.post(f"/staff/appointments/{visit.appointment.id}/check_in", data={}, page="/staff/day")
    assert response.status_code == 303
    enc = emr.find_for_appointment(db, visit.appointment.id)
    assert enc is not None and enc.opened_from == "check_in"
    day = client.get("/staff/day").get_data(as_text=True)
    assert "Continue note" in day and f"/staff/encounters/{enc.id}" in day


# -- drafts ---------------------------------------------------------------------------------------

def test_two_tabs_saving_one_draft_the_second_gets_a_conflict_and_nothing_is_lost(db, visit, clock):
    enc = _open(db, visit, clock)
    tab_a = tab_b = enc.version
    saved = emr.save_draft(db, enc.id, expected_version=tab_a, fields={"subjective": "Typed in tab A"},
                           actor=visit.actor, now=clock.now())
    db.commit()
    assert saved.version == tab_a + 1
    with pytest.raises(emr.DraftConflict) as conflict:
        emr.save_draft(db, enc.id, expected_version=tab_b, fields={"subjective": "Typed in tab B"},
                       actor=visit.actor, now=clock.now())
    db.rollback()
    assert conflict.value.current_version == tab_a + 1
    assert conflict.value.current["subjective"] == "Typed in tab A"        # what tab B needs to merge
    assert emr.get(db, enc.id).subjective == "Typed in tab A"               # tab A's text survived
    details = [e.details for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "encounter.draft_saved"))]
    assert details == [{"version": tab_a + 1}]                              # the version, never the text


def test_every_coding_change_bumps_the_version_so_a_stale_tab_conflicts(db, visit, clock):
    enc = _open(db, visit, clock)
    stale = enc.version
    emr.add_diagnosis(db, enc.id, "J06.9", actor=visit.actor, now=clock.now())
    db.commit()
    with pytest.raises(emr.DraftConflict):
        emr.save_draft(db, enc.id, expected_version=stale, fields={"plan": "Fluids"}, actor=visit.actor,
                       now=clock.now())
    db.rollback()
    with pytest.raises(emr.DraftConflict):
        emr.add_line(db, enc.id, code_id=visit.codes["LOC-CONSULT"].id, modifier="", units=1, pointers=[1],
                     actor=visit.actor, now=clock.now(), expected_version=stale)


def test_text_is_bounded_and_nuls_are_refused(db, visit, clock):
    enc = _open(db, visit, clock)
    with pytest.raises(emr.EncounterError, match="limit is 20,000"):
        emr.save_draft(db, enc.id, expected_version=enc.version, fields={"plan": "x" * 20_001},
                       actor=visit.actor, now=clock.now())
    with pytest.raises(emr.EncounterError, match="not allowed"):
        emr.save_draft(db, enc.id, expected_version=enc.version, fields={"plan": "a\x00b"},
                       actor=visit.actor, now=clock.now())


# -- diagnoses and lines ----------------------------------------------------------------------------

def test_diagnoses_are_validated_normalised_and_renumbered(db, visit, clock):
    enc = _open(db, visit, clock)
    with pytest.raises(emr.EncounterError, match="not a billable ICD-10-CM code"):
        emr.add_diagnosis(db, enc.id, "J06", actor=visit.actor, now=clock.now())       # a category, not billable
    db.rollback()
    for code in ("j06.9", "E119", "R05.9"):
        emr.add_diagnosis(db, enc.id, code, actor=visit.actor, now=clock.now())
    db.commit()
    with pytest.raises(emr.EncounterError, match="already on this note"):
        emr.add_diagnosis(db, enc.id, "J06.9", actor=visit.actor, now=clock.now())
    db.rollback()
    enc = emr.get(db, enc.id)
    assert [(d.position, d.code) for d in enc.diagnoses] == [(1, "J06.9"), (2, "E11.9"), (3, "R05.9")]
    emr.add_line(db, enc.id, code_id=visit.codes["LOC-CONSULT"].id, modifier="95", units=1, pointers=[3, 1],
                 actor=visit.actor, now=clock.now())
    db.commit()
    pointed = emr.get(db, enc.id).diagnoses[2]
    with pytest.raises(emr.EncounterError, match=r"Diagnosis 3 \(R05.9\) is pointed to by line 1"):
        emr.remove_diagnosis(db, enc.id, pointed.id, actor=visit.actor, now=clock.now())
    db.rollback()
    emr.remove_diagnosis(db, enc.id, emr.get(db, enc.id).diagnoses[1].id, actor=visit.actor, now=clock.now())
    db.commit()
    enc = emr.get(db, enc.id)
    assert [(d.position, d.code) for d in enc.diagnoses] == [(1, "J06.9"), (2, "R05.9")]
    assert enc.lines[0].diagnosis_pointers == [2, 1]                        # still R05.9 and J06.9


def test_lines_are_validated_and_renumbered(db, visit, clock):
    enc = _open(db, visit, clock)
    consult = visit.codes["LOC-CONSULT"].id
    with pytest.raises(emr.EncounterError, match="Add a diagnosis first"):
        emr.add_line(db, enc.id, code_id=consult, modifier="", units=1, pointers=[1], actor=visit.actor, now=clock.now())
    db.rollback()
    emr.add_diagnosis(db, enc.id, "J06.9", actor=visit.actor, now=clock.now())
    db.commit()
    for kwargs, message in ((dict(code_id=None), "Pick a billing code"), (dict(units=0), "Units"),
                            (dict(units="lots"), "Units"), (dict(modifier="ABC"), "modifier"),
                            (dict(pointers=[2]), "not on this note"), (dict(pointers=[]), "Point the line")):
        arguments = dict(code_id=consult, modifier="", units=1, pointers=[1]) | kwargs
        with pytest.raises(emr.EncounterError, match=message):
            emr.add_line(db, enc.id, actor=visit.actor, now=clock.now(), **arguments)
    for code in ("LOC-CONSULT", "LOC-FORMS", "LOC-FOLLOWUP"):
        emr.add_line(db, enc.id, code_id=visit.codes[code].id, modifier="", units=1, pointers=[1],
                     actor=visit.actor, now=clock.now())
    db.commit()
    middle = emr.get(db, enc.id).lines[1]
    emr.remove_line(db, enc.id, middle.id, actor=visit.actor, now=clock.now())
    db.commit()
    assert [(li.position, li.code) for li in emr.get(db, enc.id).lines] == [(1, "LOC-CONSULT"), (2, "LOC-FOLLOWUP")]
    assert audit.actions_for(db, encounter_id=enc.id)[-2:] == ["encounter.line_added", "encounter.line_removed"]


# -- signing --------------------------------------------------------------------------------------

def test_signing_prices_hashes_completes_and_audits(db, visit, clock):
    enc = _signed(db, visit, clock)
    assert enc.is_signed and enc.total_cents == CONSULT_CENTS + 2 * FORMS_CENTS
    assert [(li.unit_price_cents, li.amount_cents) for li in enc.lines] == [(CONSULT_CENTS, CONSULT_CENTS),
                                                                           (FORMS_CENTS, 2 * FORMS_CENTS)]
    assert all(li.fee_schedule_entry_id for li in enc.lines)
    assert db.get(Appointment, visit.appointment.id).status == "completed"
    db.expire_all()
    reloaded = db.get(Encounter, enc.id)
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "encounter.signed"))
    assert event.encounter_id == enc.id
    assert event.details == {"content_hash": reloaded.content_hash, "total_cents": 20000, "lines": 2,
                             "version": reloaded.version}
    assert emr.content_hash(reloaded) == reloaded.content_hash == event.details["content_hash"]   # recomputed
    assert re.fullmatch(r"[0-9a-f]{64}", reloaded.content_hash)
    assert b"Sore throat" in emr.canonical(reloaded) and "Sore throat" not in str(event.details)


def test_a_second_signing_charges_once(db, visit, clock):
    enc = _signed(db, visit, clock)
    again = emr.sign(db, enc.id, expected_version=1, user=visit.user, actor=visit.actor, now=clock.now())
    db.commit()
    assert again.id == enc.id and again.signed_at == enc.signed_at
    assert db.scalar(select(func.count(Charge.id)).where(Charge.purpose == "visit")) == 1
    cases = list(db.scalars(select(CollectionCase)))
    assert len(cases) == 1 and cases[0].encounter_id == enc.id and cases[0].status == "pending"
    assert db.scalar(select(Charge.amount_cents).where(Charge.purpose == "visit")) == 20000
    assert audit.actions_for(db, encounter_id=enc.id).count("encounter.signed") == 1
    assert audit.actions_for(db, action="visit_charge.opened") == ["visit_charge.opened"]


def test_signing_is_refused_in_plain_words(db, visit, clock):
    enc = _open(db, visit, clock)
    with pytest.raises(emr.SignRefused, match="Add at least one diagnosis. Add at least one billing line."):
        emr.sign(db, enc.id, expected_version=enc.version, user=visit.user, actor=visit.actor, now=clock.now())
    db.rollback()
    emr.add_diagnosis(db, enc.id, "J06.9", actor=visit.actor, now=clock.now())
    emr.add_line(db, enc.id, code_id=visit.codes["LOC-TELE"].id, modifier="95", units=1, pointers=[1],
                 actor=visit.actor, now=clock.now())                     # LOC-TELE has no price
    db.commit()
    enc = emr.get(db, enc.id)
    with pytest.raises(emr.SignRefused, match=r"Line 1 \(LOCAL LOC-TELE 95\) has no price in force on 2026-12-07"):
        emr.sign(db, enc.id, expected_version=enc.version, user=visit.user, actor=visit.actor, now=clock.now())
    db.rollback()
    with pytest.raises(emr.DraftConflict):
        emr.sign(db, enc.id, expected_version=enc.version - 1, user=visit.user, actor=visit.actor, now=clock.now())
    db.rollback()
    assert not emr.get(db, enc.id).is_signed and db.scalar(select(func.count(Charge.id))) == 0


def test_a_fee_change_after_signing_changes_nothing_signed(db, visit, clock):
    enc = _signed(db, visit, clock)
    before = (emr.content_hash(enc), enc.total_cents, [(li.unit_price_cents, li.amount_cents) for li in enc.lines])
    consult = visit.codes["LOC-CONSULT"].id
    fees.set_price(db, code_id=consult, modifier="", price_cents=99900, effective_from=date(2026, 1, 1), actor=SYSTEM)
    fees.set_price(db, code_id=consult, modifier="", price_cents=88800, effective_from=date(2026, 12, 1), actor=SYSTEM)
    fees.set_price(db, code_id=consult, modifier="", price_cents=77700, effective_from=date(2027, 1, 1), actor=SYSTEM)
    db.commit()
    assert fees.price_for(db, consult, "", date(2026, 12, 7)) == 88800              # the schedule did change
    db.expire_all()
    enc = db.get(Encounter, enc.id)
    after = (emr.content_hash(enc), enc.total_cents, [(li.unit_price_cents, li.amount_cents) for li in enc.lines])
    assert after == before and enc.content_hash == before[0]
    assert emr.preview_total(db, enc).total_cents == 20000                          # shows what was signed


# -- immutability in the database ------------------------------------------------------------------

FROZEN = [
    "UPDATE encounters SET plan = NULL WHERE id = {enc}",
    "UPDATE encounters SET status = 'open', content_hash = NULL WHERE id = {enc}",
    "DELETE FROM encounters WHERE id = {enc}",
    "UPDATE encounter_lines SET units = 9, amount_cents = unit_price_cents * 9 WHERE encounter_id = {enc}",
    "UPDATE encounter_lines SET unit_price_cents = 1, amount_cents = units WHERE encounter_id = {enc}",
    "DELETE FROM encounter_lines WHERE encounter_id = {enc}",
    "INSERT INTO encounter_lines (encounter_id, position, billing_code_id, code_system, code, modifier, units, "
    "diagnosis_pointers) SELECT {enc}, 9, billing_code_id, code_system, code, '', 1, '{{1}}' "
    "FROM encounter_lines WHERE encounter_id = {enc} LIMIT 1",
    "UPDATE encounter_diagnoses SET code = 'J02.9' WHERE encounter_id = {enc}",
    "DELETE FROM encounter_diagnoses WHERE encounter_id = {enc}",
    "INSERT INTO encounter_diagnoses (encounter_id, position, code) VALUES ({enc}, 5, 'J02.9')",
]


@pytest.mark.parametrize("statement", FROZEN)
def test_the_database_refuses_changes_to_a_signed_encounter(app, db, visit, clock, raw_conn, statement):
    enc = _signed(db, visit, clock)
    snapshot = "SELECT e.status, e.content_hash, e.total_cents, (SELECT array_agg(ARRAY[units, amount_cents] ORDER BY position) " \
               "FROM encounter_lines WHERE encounter_id = e.id), (SELECT array_agg(code ORDER BY position) " \
               "FROM encounter_diagnoses WHERE encounter_id = e.id) FROM encounters e WHERE e.id = %s"
    before = raw_conn.execute(snapshot, (enc.id,)).fetchone()
    with _as_app(app) as conn, pytest.raises(psycopg.errors.IntegrityConstraintViolation) as refused:
        conn.execute(statement.format(enc=enc.id))
    assert "signed" in str(refused.value)
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation):            # not even the schema's owner
        raw_conn.execute(statement.format(enc=enc.id))
    assert raw_conn.execute(snapshot, (enc.id,)).fetchone() == before


def test_an_open_encounter_still_changes(app, db, visit, clock):
    enc = _documented(db, visit, clock)
    with _as_app(app) as conn:
        conn.execute("UPDATE encounter_lines SET units = 3 WHERE encounter_id = %s AND position = 2", (enc.id,))
    db.expire_all()
    assert emr.get(db, enc.id).lines[1].units == 3


def test_an_addendum_appends_in_order_and_never_changes(app, db, visit, clock, raw_conn):
    enc = _signed(db, visit, clock)
    first = emr.add_addendum(db, enc.id, text="Rapid strep came back negative.", user=visit.user,
                             actor=visit.actor, now=clock.now())
    db.commit()
    clock.advance(timedelta(hours=2))
    second = emr.add_addendum(db, enc.id, text="Patient called: feeling better.", user=visit.user,
                              actor=visit.actor, now=clock.now())
    db.commit()
    db.expire_all()
    enc = db.get(Encounter, enc.id)
    assert [a.text for a in enc.addenda] == ["Rapid strep came back negative.", "Patient called: feeling better."]
    assert enc.addenda[0].signed_at < enc.addenda[1].signed_at
    assert [a.content_hash for a in enc.addenda] == [emr.addendum_hash(a, enc) for a in enc.addenda]
    details = [e.details for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "encounter.addendum")
                                             .order_by(AuditEvent.seq))]
    assert [d["content_hash"] for d in details] == [first.content_hash, second.content_hash]
    for statement in ("UPDATE encounter_addenda SET text = 'rewritten'", "DELETE FROM encounter_addenda"):
        with _as_app(app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)                     # the app's role may only add and read them
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="append-only"):
            raw_conn.execute(statement)                 # and the trigger refuses even the owner
    assert db.scalar(select(func.count(Addendum.id))) == 2


def test_an_addendum_is_for_a_signed_note_only(db, visit, clock):
    enc = _documented(db, visit, clock)
    with pytest.raises(emr.EncounterError, match="Addenda are for signed notes"):
        emr.add_addendum(db, enc.id, text="Too early", user=visit.user, actor=visit.actor, now=clock.now())


def test_a_signed_draft_refuses_saving_in_plain_words(db, visit, clock):
    enc = _signed(db, visit, clock)
    with pytest.raises(emr.EncounterSigned, match="signed: it can no longer be changed"):
        emr.save_draft(db, enc.id, expected_version=enc.version, fields={"plan": "Late edit"}, actor=visit.actor,
                       now=clock.now())
    with pytest.raises(emr.EncounterSigned):
        emr.add_diagnosis(db, enc.id, "J02.9", actor=visit.actor, now=clock.now())


# -- the worklist ---------------------------------------------------------------------------------

def test_the_worklist_shows_unsigned_notes_with_their_age(db, client, visit, clock, book_visit):
    enc = _open(db, visit, clock)
    clock.advance(timedelta(hours=4))                                  # 12:00 New York: the visit was at 10:00
    items = emr.worklist(db, provider_id=visit.provider.id, now=clock.now())
    assert [(i.encounter.id, emr.age_label(i.age)) for i in items] == [(enc.id, "2 h")]
    login(client, visit.user.email)
    page = client.get("/staff/encounters")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "Pat Example" in html and "2 h" in html and f"/staff/encounters/{enc.id}" in html
    assert "Notes to sign (1)" in client.get("/provider").get_data(as_text=True)
    clock.advance(timedelta(days=3))
    assert "3 days" in client.get("/staff/encounters").get_data(as_text=True)
    _sign_through_service(db, visit, clock, enc.id)
    assert "No unsigned note" in client.get("/staff/encounters").get_data(as_text=True)


def _sign_through_service(db, visit, clock, encounter_id):
    emr.add_diagnosis(db, encounter_id, "J06.9", actor=visit.actor, now=clock.now())
    emr.add_line(db, encounter_id, code_id=visit.codes["LOC-CONSULT"].id, modifier="", units=1, pointers=[1],
                 actor=visit.actor, now=clock.now())
    db.commit()
    enc = emr.get(db, encounter_id)
    emr.sign(db, enc.id, expected_version=enc.version, user=visit.user, actor=visit.actor, now=clock.now())
    db.commit()


# -- the pages ------------------------------------------------------------------------------------

def test_the_editor_autosaves_and_answers_a_conflict_without_losing_text(db, client, visit, clock):
    enc = _open(db, visit, clock)
    login(client, visit.user.email)
    page = client.get(f"/staff/encounters/{enc.id}")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    token = csrf_from(page.get_data(as_text=True))
    htmx = {"HX-Request": "true"}
    saved = client.post(f"/staff/encounters/{enc.id}/draft", headers=htmx,
                        data={"csrf_token": token, "version": "1", "subjective": "Tab A text"})
    html = saved.get_data(as_text=True)
    assert saved.status_code == 200 and "Saved 8:00 AM" in html and 'name="version" value="2"' in html
    stale = client.post(f"/staff/encounters/{enc.id}/draft", headers=htmx,
                        data={"csrf_token": token, "version": "1", "subjective": "Tab B text"})
    html = stale.get_data(as_text=True)
    assert stale.status_code == 409
    assert "This note was changed in another tab or window — your text is kept below; reload to merge" in html
    assert 'name="version" value="1"' in html and "Tab A text" in html     # still stale; the saved text to merge
    assert "<textarea" not in html                                        # the typed text is not swapped away
    assert emr.get(db, enc.id).subjective == "Tab A text"
    kept = client.post(f"/staff/encounters/{enc.id}/draft", headers=htmx,
                       data={"csrf_token": token, "version": "1", "conflict_version": "2", "overwrite": "1",
                             "subjective": "Tab B text"})
    assert kept.status_code == 200 and emr.get(db, enc.id).subjective == "Tab B text"


def test_a_provider_cannot_open_another_providers_note(db, client, visit, clock, factories):
    enc = _open(db, visit, clock)
    other = factories.provider()
    login(client, other.user.email)
    assert client.get(f"/staff/encounters/{enc.id}").status_code == 404
    assert client.get(f"/staff/appointments/{visit.appointment.id}/encounter").status_code == 404
    admin = factories.user("admin")
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/staff/day").get_data(as_text=True))})
    login(client, admin.email)
    read_only = client.get(f"/staff/encounters/{enc.id}").get_data(as_text=True)
    assert "Read-only" in read_only and "Review and sign" not in read_only


def test_signing_without_a_recent_code_asks_for_one(db, client, visit, clock):
    enc = _documented(db, visit, clock)
    login(client, visit.user.email)
    clock.advance(timedelta(minutes=16))
    review = client.get(f"/staff/encounters/{enc.id}/review")
    html = review.get_data(as_text=True)
    assert review.status_code == 200 and "$200.00" in html
    token = csrf_from(html)
    refused = client.post(f"/staff/encounters/{enc.id}/sign", data={"csrf_token": token, "version": str(enc.version)},
                          headers={"Referer": f"http://localhost/staff/encounters/{enc.id}/review"})
    assert refused.status_code == 403 and "Confirm it is you" in refused.get_data(as_text=True)
    htmx = client.post(f"/staff/encounters/{enc.id}/sign", data={"csrf_token": token, "version": str(enc.version)},
                       headers={"HX-Request": "true",
                                "HX-Current-URL": f"http://localhost/staff/encounters/{enc.id}/review"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/mfa/step-up?next=")
    assert not emr.get(db, enc.id).is_signed and db.scalar(select(func.count(Charge.id))) == 0


def test_signing_through_the_pages_with_a_fresh_code(db, client, visit, clock):
    enc = _documented(db, visit, clock)
    login(client, visit.user.email)                         # the sign-in's code is fresh
    token = csrf_from(client.get(f"/staff/encounters/{enc.id}/review").get_data(as_text=True))
    signed = client.post(f"/staff/encounters/{enc.id}/sign", data={"csrf_token": token, "version": str(enc.version)})
    assert signed.status_code == 303 and signed.headers["Location"].endswith(f"/staff/encounters/{enc.id}")
    enc = emr.get(db, enc.id)
    html = client.get(f"/staff/encounters/{enc.id}").get_data(as_text=True)
    assert enc.is_signed and "Signed by" in html and enc.content_hash[:16] in html and "$200.00" in html
    again = client.post(f"/staff/encounters/{enc.id}/sign", data={"csrf_token": token, "version": "1"})
    assert again.status_code == 303                          # a repeat shows the signed note, charges nothing
    assert db.scalar(select(func.count(CollectionCase.id))) == 1
    added = client.post(f"/staff/encounters/{enc.id}/addenda", data={"csrf_token": token, "text": "Addendum one"})
    assert added.status_code == 303
    assert "Addendum one" in client.get(f"/staff/encounters/{enc.id}").get_data(as_text=True)
    assert db.scalar(select(func.count(EncounterLine.id))) == 2


@pytest.mark.parametrize("path, data", [
    ("draft", {"version": "99999999999999999999", "plan": "x"}),
    ("draft", {"version": "abc", "plan": "x"}),
    ("draft", {"plan": "x"}),
    ("draft", {"version": "1", "plan": "x" * 20_001}),
    ("draft", {"version": "1", "overwrite": "1", "conflict_version": "-5"}),
    ("diagnoses", {"code": "x" * 5000, "version": "1"}),
    ("diagnoses/999999/delete", {"version": "1"}),
    ("lines", {"code_id": "99999999999999999999", "units": "9" * 400, "pointers": ["a", "99"], "modifier": "☃☃"}),
    ("lines/2147483647/delete", {}),
    ("sign", {"version": "0"}),
    ("addenda", {"text": ""}),
])
def test_hostile_input_is_answered_in_plain_words(db, client, visit, clock, path, data):
    enc = _open(db, visit, clock)
    login(client, visit.user.email)
    token = csrf_from(client.get(f"/staff/encounters/{enc.id}").get_data(as_text=True))
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(f"/staff/encounters/{enc.id}/{path}", data={**data, "csrf_token": token},
                               headers=headers)
        assert response.status_code < 500 and response.status_code in (303, 400, 409, 422), response.status_code
    for query in ({"dx": "é" * 5000}, {"cq": "%_\\" * 100}):
        assert client.get(f"/staff/encounters/{enc.id}", query_string=query).status_code == 200
    assert not emr.get(db, enc.id).is_signed
