from app.models import (AppointmentType, AvailabilityException, AvailabilityRule, ClinicSettings, Provider,
                        User)
from app.services.seed import seed_demo
from tests.helpers.web import login


def test_seed_creates_the_demo_clinic_once_and_its_logins_work(app, db, client):
    logins = seed_demo(db)
    db.commit()
    seed_demo(db)
    db.commit()
    assert db.query(User).count() == 9          # 4 demo logins + 5 more providers
    providers = db.query(Provider).all()
    assert len(providers) >= 6
    assert len({p.specialty_id for p in providers}) >= 3
    assert len({p.timezone for p in providers}) >= 2
    assert all(db.query(AvailabilityRule).filter_by(provider_id=p.id).count() for p in providers)
    assert all(db.query(AvailabilityException).filter_by(provider_id=p.id).count() == 1 for p in providers)
    assert {t.payment_timing for t in db.query(AppointmentType)} == {"deposit_to_book", "post_visit", "hybrid"}
    assert {role for role, _, _ in logins} == {"patient", "provider", "billing", "admin"}
    assert db.get(ClinicSettings, 1).name == "Demo Family Clinic"
    for role, email, password in logins:
        response = login(client, email, password)
        assert response.status_code == 303, role
        client.post("/logout", headers={"X-CSRFToken": _token(client)})


def _token(client):
    import re

    page = client.get("/").get_data(as_text=True)
    if "X-CSRFToken" not in page:
        page = client.get(client.get("/").headers.get("Location", "/")).get_data(as_text=True)
    return re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
