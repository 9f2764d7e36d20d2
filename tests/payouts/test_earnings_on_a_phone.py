"""A provider reads their earnings on a 360 px phone (issue 16): the visits table stacks (no sideways
scrolling), every figure keeps its label, links and buttons are tap-sized, the date range narrows the
list, and the CSV downloads without a patient's name."""
import pytest
from playwright.sync_api import expect

from tests.helpers.phone import sign_in, small_tap_targets
from tests.payouts.test_earnings import PATIENT_NAME, built  # noqa: F401  (the rows, a fixture)

pytestmark = pytest.mark.e2e


def test_the_earnings_page_fits_a_phone_and_downloads_the_csv(live_server, phone, db, built, tmp_path):  # noqa: F811
    page = phone
    sign_in(page, live_server, built.provider.user.email)
    page.get_by_role("link", name="Earnings").click()
    page.wait_for_url(lambda url: url.endswith("/staff/earnings"))
    expect(page.get_by_role("heading", name="Earnings")).to_be_visible()
    expect(page.locator('[data-total="earned"]')).to_have_text("$352.80")

    # Nothing scrolls sideways; each visit is a stacked card whose figures carry their labels.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert not page.locator("#earnings-visits thead").is_visible() or \
        page.locator("#earnings-visits thead").bounding_box()["height"] <= 1
    row = page.locator(f"#split-{built.splits['paid_out'].id}")
    visit_box = row.locator("td.visit").bounding_box()
    share = row.locator('[data-field="share"]')
    assert share.bounding_box()["y"] >= visit_box["y"] + visit_box["height"] - 1      # below the date, not beside
    label = share.evaluate("el => getComputedStyle(el, '::before').content")
    assert "Your share" in label
    expect(share).to_have_text("$86.80")
    assert row.bounding_box()["width"] <= 360
    assert small_tap_targets(page) == []

    # The range narrows the visits (Nov 2 in the clinic's timezone: two visits).
    page.get_by_label("From").fill("2026-11-02")
    page.get_by_label("To").fill("2026-11-02")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(lambda url: "from=2026-11-02" in url and "to=2026-11-02" in url)
    expect(page.locator("#earnings-visits tbody tr")).to_have_count(2)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == f"earnings-{built.provider.id}-2026-11-02-2026-11-02.csv"
    saved = tmp_path / "earnings.csv"
    download.save_as(saved)
    body = saved.read_text()
    assert body.startswith("visit_reference,visit_date,visit_time,charge,gross")
    assert len(body.strip().splitlines()) == 3 and PATIENT_NAME not in body
