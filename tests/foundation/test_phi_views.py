"""Every route declares whether it shows PHI, and each view of a PHI page writes exactly one
audit event: who (user and role), which patient and record, when and from where
(45 CFR 164.312(b); issue 12).

The declaration table below is the route-table test for PHI: a new route without a ``phi=``
declaration fails ``test_every_route_declares_phi``; a route whose declaration changes fails
``test_phi_declarations_match_the_table`` until the table says so. Every GET route declared to
show PHI must have a case in ``PAGES`` (``test_every_phi_page_has_a_case``), which is opened as
each role allowed to see it.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.access import UNDECLARED, allowed_roles, phi_for, rules_for
from app.models import AuditEvent
from app.services import access_log, links
from tests.helpers.payments import MON_10_NY, paid_appointment, sign_in
from tests.helpers.web import IsolatedClient

# endpoint -> the kind of record it shows (routes not listed show no PHI: phi=False)
PHI_ROUTES = {
    "home.patient": "patient_home",
    "booking.appointments": "appointments",
    "booking.appointment": "appointment",
    "booking.review": "appointment",
    "booking.release": "appointment",
    "booking.cancel": "appointment",
    "booking.reschedule_form": "appointment",
    "booking.reschedule": "appointment",
    "booking.ics": "appointment",
    "booking.receipt": "receipt",
    "checkout.show": "appointment",
    "checkout.save_card": "appointment",
    "checkout.complete": "appointment",
    "checkout.pay_saved": "appointment",
    "checkout.browser_return": "appointment",
    "checkout.done": "appointment",
    "checkout.setup_consent": "appointment",
    "checkout.setup_complete": "appointment",
    "checkout.setup_saved": "appointment",
    "checkout.setup_return": "appointment",
    "checkout.add_card": "appointment",
    "checkout.hybrid_consent": "appointment",
    "checkout.join": "visit",
    **{f"staff.{name}": "encounter" for name in (
        "encounters", "encounter_for_appointment", "encounter", "save_draft", "search_diagnoses", "add_diagnosis",
        "remove_diagnosis", "search_codes", "add_line", "remove_line", "review", "sign", "add_addendum")},
    "checkout.room": "visit",
    "links.retry": "appointment",
    "links.retry_take": "appointment",
    "account.cards_page": "payment_methods",
    "account.remove_card": "payment_methods",
    "account.phone_page": "contact",
    "account.change_phone": "contact",
    "account.send_code": "contact",
    "account.verify_phone": "contact",
    "staff.day": "schedule",
    "staff.week": "schedule",
    "staff.mark": "appointment",
    "staff.cancel": "appointment",
    "staff.messages": "message_log",
    "staff.patient": "patient",
    "staff.break_glass": "patient",
    "billing.payments": "payments",
    "billing.payment": "payment",
    "billing.refund": "payment",
    "chain.show": "audit_chain",
    "chain.export_csv": "audit_chain",
    "chain.export_json": "audit_chain",
    "admin.access_review": "patients",
    "admin.patient_access": "access_report",
    "admin.patient_access_csv": "access_report",
    "admin.user_access": "access_report",
    "admin.user_access_csv": "access_report",
    "dev.outbox": "outbox",
    "booking.statement": "statement",
    "booking.statement_pdf": "statement",
    "billing.collections": "billing",
    "billing.final_notice": "billing",
    "billing.send_to_agency": "billing",
    "billing.start_plan": "billing",
    "billing.write_off": "billing",
    "billing.claims_list": "billing",
    "billing.check_remittances": "billing",
    "billing.claim": "billing",
    "billing.submit_claim": "billing",
    "billing.record_eob": "billing",
    "billing.disputes_list": "billing",
    "billing.check_disputes": "billing",
    "billing.dispute": "billing",
    "billing.dispute_review": "billing",
    "billing.dispute_submit": "billing",
    "intake.step": "intake",
    "intake.save": "intake",
    "intake.submit": "intake",
    "intake.card_photo": "card_photo",
    "intake.staff_view": "intake",
    "intake.estimate": "estimate",
    "booking.good_faith_estimate": "good_faith_estimate",
    "pay.link": "appointment",
    "pay.link_use": "appointment",
    "pay.show": "appointment",
    "pay.complete": "appointment",
    "pay.pay_saved": "appointment",
    "pay.browser_return": "appointment",
    # the waitlist (issue 17): the patient's list, the offer link's page and its tap, staff's list per provider
    "waitlist.mine": "waitlist",
    "waitlist.offer": "waitlist",
    "waitlist.offer_take": "waitlist",
    "staff.waitlist": "waitlist",
    # the FHIR API (issue 17): every read, audited with the client as actor
    "fhir.search": "fhir",
    "fhir.read": "fhir",
    "fhir.everything": "fhir",
    "fhir.export_file": "fhir",
}

# The FHIR API's reads (issue 17): a bearer token, not a session, opens them, so they have no case in
# PAGES; tests/fhir/ checks one audit event per read, its actor the client, naming the patients.
TOKEN_ONLY = {"fhir.search", "fhir.read", "fhir.everything", "fhir.export_file"}

# GET routes that show PHI but answer with a redirect to a page that is audited itself.
REDIRECT_ONLY = {
    "staff.encounter_for_appointment": "GET: to the visit's note when it exists (else a 'Start the note' page)",
    "checkout.browser_return": "the return from 3-D Secure: redirects to checkout or done",
    "checkout.setup_return": "the return from 3-D Secure at card setup: redirects to the setup page or done",
    "pay.browser_return": "the return from 3-D Secure on the pay page: redirects to the pay page",
}


def _routes(app):
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()})


def test_every_route_declares_phi(app):
    undeclared = [endpoint for endpoint in _routes(app) if phi_for(app, endpoint) is UNDECLARED]
    assert undeclared == [], "declare phi= in @access(...) for these routes"


def test_phi_declarations_match_the_table(app):
    declared = {endpoint: phi_for(app, endpoint) for endpoint in _routes(app)
                if phi_for(app, endpoint) not in (False, UNDECLARED)}
    assert declared == {e: k for e, k in PHI_ROUTES.items() if e in app.view_functions}


def test_a_route_without_a_declaration_counts_as_phi(app):
    app.view_functions["tests.undeclared"] = lambda: "x"      # a view that forgot phi=
    try:
        assert phi_for(app, "tests.undeclared") is UNDECLARED
    finally:
        del app.view_functions["tests.undeclared"]


# -- each PHI page, opened by each role allowed to see it, writes exactly one audit event --------------

@pytest.fixture
def clinic(db, factories, clock, policy, sandbox, app):
    """A patient with a paid, confirmed visit (Monday 10:00 New York) and a hold on Tuesday."""
    from app.models import Provider
    from app.services import booking
    from app.services.audit import Actor

    confirmed = paid_appointment(db, factories, clock, policy, sandbox, starts_at=MON_10_NY)
    patient_user = confirmed.patient.user
    hold = booking.take_hold(db, now=clock.now(), patient=confirmed.patient, provider_id=confirmed.provider_id,
                             type_id=confirmed.type_id, starts_at=MON_10_NY + timedelta(days=1), policy=policy,
                             actor=Actor("user", patient_user.id, "patient"))
    db.commit()
    token = links.issue(db, secret=app.config["SETTINGS"].SECRET_KEY, purpose="retry_checkout",
                        user=patient_user, now=clock.now(), ttl=timedelta(hours=1), appointment=hold)
    db.commit()
    provider_user = db.get(Provider, confirmed.provider_id).user
    # A second visit of the same patient (Wednesday), checked in, with its note open (the EMR pages).
    from app.models import Appointment
    from app.services import emr

    wednesday = MON_10_NY + timedelta(days=2)
    seen = Appointment(patient_id=confirmed.patient_id, provider_id=confirmed.provider_id, type_id=confirmed.type_id,
                       status="confirmed", starts_at=wednesday, ends_at=wednesday + timedelta(minutes=30),
                       blocked_start=wednesday, blocked_end=wednesday + timedelta(minutes=30), price_cents=0,
                       payment_timing="post_visit", modality=confirmed.modality)
    db.add(seen)
    db.flush()
    encounter = emr.open_encounter(db, seen, actor=Actor.system("test"), user=provider_user, now=clock.now(),
                                   source="day_view")
    db.commit()
    charge_id = confirmed.charges[0].id if getattr(confirmed, "charges", None) else _charge_id(db, confirmed.id)
    patient_id = confirmed.patient_id
    post_visit = {}

    def visit():
        """Made on first use: the same patient's signed post-visit visit with a balance due
        (collections case recovering) and a pay link for it."""
        if not post_visit:
            from app.models import Patient
            from app.services import visit_charges
            from tests.postvisit.test_statements import signed_visit

            signed = signed_visit(db, factories, patient=db.get(Patient, patient_id))
            url = visit_charges.issue_link(db, signed.case, now=clock.now())
            db.commit()
            post_visit.update(appointment_id=signed.appointment.id, pay_token=url.rsplit("/pay/", 1)[1])
        return post_visit

    return dict(patient_id=patient_id, appointment_id=confirmed.id, hold_id=hold.id,
                provider_id=confirmed.provider_id, room=confirmed.telehealth_room, charge_id=charge_id,
                token=token, users={"patient": patient_user, "provider": provider_user,
                                    "billing": factories.user("billing"), "admin": factories.user("admin")},
                patient_user_id=patient_user.id, visit=visit, encounter_id=encounter.id, seen_id=seen.id)


def _charge_id(db, appointment_id):
    from app.models import Charge

    return db.scalar(select(Charge.id).where(Charge.appointment_id == appointment_id))


# endpoint -> (roles that may see it, url builder, what the event must name: "appointment" | "hold" | "patient"
#              | "visit" (the post-visit visit ``clinic["visit"]()`` makes) | "listed" | "none")
PAGES = {
    "home.patient": (["patient"], lambda c: "/patient", "patient"),
    "booking.appointments": (["patient"], lambda c: "/appointments", "patient"),
    "booking.appointment": (["patient"], lambda c: f"/appointments/{c['appointment_id']}", "appointment"),
    "booking.review": (["patient"], lambda c: f"/book/holds/{c['hold_id']}", "hold"),
    "booking.reschedule_form": (["patient"], lambda c: f"/appointments/{c['appointment_id']}/reschedule",
                                "appointment"),
    "booking.ics": (["patient"], lambda c: f"/appointments/{c['appointment_id']}.ics", "appointment"),
    "booking.receipt": (["patient"], lambda c: f"/appointments/{c['appointment_id']}/receipt", "appointment"),
    "checkout.show": (["patient"], lambda c: f"/checkout/{c['hold_id']}", "hold"),
    "checkout.done": (["patient"], lambda c: f"/checkout/{c['appointment_id']}/done", "appointment"),
    "checkout.add_card": (["patient"], lambda c: f"/appointments/{c['appointment_id']}/card", "appointment"),
    "checkout.join": (["patient", "provider"], lambda c: f"/visits/{c['appointment_id']}/join", "appointment"),
    "checkout.room": (["patient", "provider"], lambda c: f"/visits/room/{c['room']}", "appointment"),
    "links.retry": (["anonymous"], lambda c: f"/r/{c['token']}", "hold"),
    "account.cards_page": (["patient"], lambda c: "/account/cards", "patient"),
    "account.phone_page": (["patient"], lambda c: "/account/phone", "patient"),
    "staff.day": (["provider", "billing", "admin"],
                  lambda c: f"/staff/day?date=2026-12-07&provider_id={c['provider_id']}", "listed"),
    "staff.week": (["provider", "billing", "admin"],
                   lambda c: f"/staff/week?date=2026-12-07&provider_id={c['provider_id']}", "listed"),
    "staff.cancel": (["provider", "billing", "admin"],
                     lambda c: f"/staff/appointments/{c['appointment_id']}/cancel", "appointment"),
    "staff.messages": (["provider", "billing", "admin"],
                       lambda c: f"/staff/appointments/{c['appointment_id']}/messages", "appointment"),
    "staff.patient": (["provider", "admin"], lambda c: f"/staff/patients/{c['patient_id']}", "patient"),
    "staff.encounters": (["provider"], lambda c: "/staff/encounters", "listed"),
    "staff.encounter": (["provider", "admin"], lambda c: f"/staff/encounters/{c['encounter_id']}", "patient"),
    "staff.search_diagnoses": (["provider"], lambda c: f"/staff/encounters/{c['encounter_id']}/diagnoses/search?dx=J06",
                               "patient"),
    "staff.search_codes": (["provider"], lambda c: f"/staff/encounters/{c['encounter_id']}/codes/search?cq=G04",
                           "patient"),
    "staff.review": (["provider"], lambda c: f"/staff/encounters/{c['encounter_id']}/review", "patient"),
    "billing.payments": (["billing", "admin"], lambda c: "/billing/payments", "listed"),
    "billing.payment": (["billing", "admin"], lambda c: f"/billing/payments/{c['charge_id']}", "appointment"),
    "chain.show": (["billing", "admin"], lambda c: f"/billing/appointments/{c['appointment_id']}/chain",
                   "appointment"),
    "chain.export_csv": (["billing", "admin"],
                         lambda c: f"/billing/appointments/{c['appointment_id']}/chain.csv", "appointment"),
    "chain.export_json": (["billing", "admin"],
                          lambda c: f"/billing/appointments/{c['appointment_id']}/chain.json", "appointment"),
    "admin.access_review": (["admin"], lambda c: "/admin/access?q=example", "listed"),
    "admin.patient_access": (["admin"], lambda c: f"/admin/access/patients/{c['patient_id']}", "patient"),
    "admin.patient_access_csv": (["admin"], lambda c: f"/admin/access/patients/{c['patient_id']}.csv",
                                 "patient"),
    "admin.user_access": (["admin"], lambda c: f"/admin/access/users/{c['patient_user_id']}", "none"),
    "admin.user_access_csv": (["admin"], lambda c: f"/admin/access/users/{c['patient_user_id']}.csv", "none"),
    # the patient's signed post-visit visit with a balance due ("visit": the event names that appointment)
    "booking.statement": (["patient"], lambda c: f"/appointments/{c['visit']()['appointment_id']}/statement",
                          "visit"),
    "booking.statement_pdf": (["patient"],
                              lambda c: f"/appointments/{c['visit']()['appointment_id']}/statement.pdf", "visit"),
    "billing.collections": (["billing", "admin"], lambda c: (c["visit"](), "/billing/collections")[1], "listed"),
    "pay.link": (["anonymous"], lambda c: f"/pay/{c['visit']()['pay_token']}", "visit"),
    "pay.show": (["patient"], lambda c: f"/appointments/{c['visit']()['appointment_id']}/pay", "visit"),
    # billing's claims (issue 15): the worklist, and a claim of the clinic's confirmed appointment
    "billing.claims_list": (["billing", "admin"], lambda c: "/billing/claims?show=all", "none"),
    "billing.claim": (["billing", "admin"], lambda c: f"/billing/claims/{_claim_of(c['appointment_id'])}",
                      "appointment"),
    # disputes (issue 16): billing's worklist, and a dispute of the clinic's confirmed appointment
    "billing.disputes_list": (["billing", "admin"], lambda c: "/billing/disputes", "none"),
    "billing.dispute": (["billing", "admin"], lambda c: f"/billing/disputes/{_dispute_of(c['appointment_id'])}",
                        "appointment"),
    # intake (issue 15): a step of the intake of the clinic's confirmed visit, its card photo, the staff view
    "intake.step": (["patient"], lambda c: f"/intake/{_intake_of(c)['intake_id']}/about", "appointment"),
    "intake.card_photo": (["patient", "provider", "billing", "admin"],
                          lambda c: f"/coverages/{_intake_of(c)['coverage_id']}/card-front", "patient"),
    "intake.staff_view": (["provider", "billing", "admin"],
                          lambda c: (_intake_of(c), f"/staff/appointments/{c['appointment_id']}/intake")[1],
                          "appointment"),
    # estimates (issue 15): a submitted self-pay intake's estimate (attached to no visit: names the patient),
    # and the Good Faith Estimate of the clinic's confirmed (self-pay: deposit-to-book) visit
    "intake.estimate": (["patient"], lambda c: f"/intake/{_estimate_of(c)['intake_id']}/estimate", "patient"),
    "booking.good_faith_estimate": (["patient"], lambda c: f"/appointments/{c['appointment_id']}/good-faith-estimate",
                                    "appointment"),
    # the waitlist (issue 17): the clinic's patient waiting for its provider, offered a free Thursday time
    "waitlist.mine": (["patient"], lambda c: (_waitlist_of(c), "/waitlist")[1], "patient"),
    "waitlist.offer": (["anonymous"], lambda c: f"/w/{_waitlist_of(c)['token']}", "patient"),
    "staff.waitlist": (["provider", "admin"],
                       lambda c: (_waitlist_of(c), f"/staff/waitlist?provider_id={c['provider_id']}")[1], "listed"),
}


def _waitlist_of(clinic: dict) -> dict:
    from tests.waitlist.phi_cases import waitlist_case

    return waitlist_case(clinic)


def _estimate_of(clinic: dict) -> dict:
    from tests.estimates.phi_cases import estimate_case

    return estimate_case(clinic)


def _intake_of(clinic: dict) -> dict:
    from tests.intake.phi_cases import intake_case

    return intake_case(clinic)
# Registered only when APP_ENV=development (never in the tests' app or production); declared
# phi="outbox" (it lists recipients' addresses) and audited like any PHI page when it exists.
DEVELOPMENT_ONLY = {"dev.outbox"}


def _claim_of(appointment_id: int) -> int:
    from app.extensions import db as sqla
    from tests.helpers.access_tables.access_table_claims import sample_claim

    return sample_claim(sqla.session, appointment_id)


def _dispute_of(appointment_id: int) -> int:
    from app.extensions import db as sqla
    from tests.helpers.access_tables.access_table_disputes import sample_dispute

    return sample_dispute(sqla.session, appointment_id)


def test_every_phi_page_has_a_case(app):
    get_routes = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    phi_pages = {e for e in get_routes if phi_for(app, e) not in (False, UNDECLARED)}
    assert phi_pages - set(REDIRECT_ONLY) - TOKEN_ONLY == set(PAGES)
    assert not DEVELOPMENT_ONLY & set(app.view_functions), "the tests' app registered a development page"
    # each case opens the page as every role the route admits (public pages: the link's browser)
    for endpoint, (roles, _, _) in PAGES.items():
        admitted = allowed_roles(rules_for(app, endpoint))
        if admitted is not None and endpoint not in ("checkout.join", "checkout.room"):
            assert set(roles) == admitted, endpoint


def _views_since(db, seq):
    return db.scalars(select(AuditEvent).where(AuditEvent.seq > seq,
                                               AuditEvent.action.in_(access_log.VIEW_ACTIONS))
                      .order_by(AuditEvent.seq)).all()


@pytest.mark.parametrize("endpoint", sorted(PAGES))
def test_each_phi_page_writes_one_audit_event_per_view(app, db, clinic, endpoint):
    roles, url_of, names = PAGES[endpoint]
    for role in roles:
        client = IsolatedClient(app, app.response_class, use_cookies=True)
        user = clinic["users"].get(role)
        if user is not None:
            sign_in(client, user)
        before = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
        response = client.get(url_of(clinic), headers={"X-Request-Id": f"phi-{role}"})
        assert response.status_code == 200, (endpoint, role, response.status_code)
        assert "no-store" in response.headers["Cache-Control"]
        db.expire_all()
        events = _views_since(db, before)
        assert len(events) == 1, (endpoint, role, [e.action for e in events])
        event = events[0]
        if role == "anonymous":          # the one-click link speaks for its patient
            assert (event.actor_type, event.actor_id) == ("link", clinic["patient_user_id"])
        else:
            assert (event.actor_type, event.actor_id, event.actor_role) == ("user", user.id, role)
        assert event.request_id == f"phi-{role}" and event.ip
        if names == "appointment":
            assert (event.patient_id, event.appointment_id) == (clinic["patient_id"], clinic["appointment_id"])
        elif names == "hold":
            assert (event.patient_id, event.appointment_id) == (clinic["patient_id"], clinic["hold_id"])
        elif names == "visit":
            assert (event.patient_id, event.appointment_id) == (clinic["patient_id"],
                                                                clinic["visit"]()["appointment_id"])
        elif names == "patient":
            assert event.patient_id == clinic["patient_id"]
        elif names == "listed":
            assert event.patient_id == clinic["patient_id"] or \
                clinic["patient_id"] in event.details.get("patient_ids", [])
        # a second view is a second event
        client.get(url_of(clinic)).close()
        db.expire_all()
        assert len(_views_since(db, before)) == 2


def test_pages_without_phi_write_no_view_event(app, db, client, login_as):
    login_as("patient")
    before = db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))
    for url in ("/book", "/healthz", "/"):
        client.get(url).close()
    db.expire_all()
    assert _views_since(db, before) == []


def test_a_view_whose_audit_cannot_be_written_is_not_shown(app, db, client, login_as, monkeypatch):
    """The page and its audit row commit together: no row, no page."""
    login_as("patient")

    def broken(*args, **kwargs):
        raise RuntimeError("audit store refused the row")

    monkeypatch.setattr(access_log, "record_view", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)     # answer as in production
    response = client.get("/appointments")
    assert response.status_code == 500
    assert "Your appointments" not in response.get_data(as_text=True)
