"""The fee schedule on a phone (360 px): the admin sets a price through the form, sees a refusal next
to the field, then the price in the table; nothing wider than the screen."""
import pytest
from playwright.sync_api import expect

from app.services import codes
from app.services.audit import Actor
from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e


def test_admin_sets_a_price_on_a_phone(live_server, phone, db, factories, clock):
    codes.seed_shipped(db, Actor.system("test"))
    db.commit()
    admin = factories.user("admin")
    page = phone
    sign_in(page, live_server, admin.email)
    page.goto(f"{live_server}/admin", wait_until="load")
    page.get_by_role("link", name="Fee schedule: billing codes and prices").click()
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    page.get_by_label("Code", exact=True).fill("LOC-CONSULT")
    page.get_by_label("Price (USD)").fill("0")
    page.get_by_label("Effective from").fill("2026-12-01")
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_text("The price must be more than $0.00.")).to_be_visible()

    page.get_by_label("Price (USD)").fill("150")
    page.get_by_role("button", name="Set price").click()
    expect(page.get_by_text("LOCAL LOC-CONSULT: $150.00 from 2026-12-01.")).to_be_visible()
    code = codes.find(db, "LOCAL:LOC-CONSULT")[0]
    expect(page.locator(f"#code-{code.id}")).to_contain_text("$150.00")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
