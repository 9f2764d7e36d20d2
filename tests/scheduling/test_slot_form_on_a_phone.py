"""A day of slots is one form: tapping a time posts that time once, every slot button is disabled
while the hold is taken, and the tapped one says it is busy."""
import pytest

from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e

# Recorded when htmx sends the request (after it disabled the buttons); kept in sessionStorage
# because the answer (HX-Redirect) loads the review page.
RECORD_SEND = """
document.body.addEventListener('htmx:beforeSend', () => {
  const buttons = Array.from(document.querySelectorAll('#slot-list button.slot'));
  sessionStorage.setItem('sent', JSON.stringify({
    enabled: buttons.filter(b => !b.disabled).length,
    total: buttons.length,
    busy: buttons.filter(b => b.getAttribute('aria-busy') === 'true').map(b => b.value),
  }));
});
"""


def test_tapping_a_slot_posts_it_once_with_every_slot_disabled_and_the_tapped_one_busy(live_server, phone,
                                                                                      factories, clock, db):
    from app.models import Appointment

    visit = factories.appointment_type(name="Video consult")
    provider = factories.provider(types=[visit], full_name="Dr. Fay Form")
    me = factories.user("patient")
    page = phone
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}", wait_until="load")
    posts = []
    page.on("request", lambda request: posts.append(request.post_data) if request.method == "POST" else None)
    page.evaluate(RECORD_SEND)

    tapped = page.locator("#slot-list form").nth(1).locator("button.slot").nth(2)    # Tuesday's third time
    starts_at = tapped.get_attribute("value")
    tapped.click()
    page.get_by_role("heading", name="Review your visit").wait_for()

    sent = page.evaluate("JSON.parse(sessionStorage.getItem('sent'))")
    assert sent["total"] > 20 and sent["enabled"] == 0, sent
    assert sent["busy"] == [starts_at]
    assert len(posts) == 1 and "starts_at=" in posts[0]
    [hold] = db.query(Appointment).all()
    assert hold.starts_at.isoformat() == starts_at and hold.status == "held"
    # The whole review page (HX-Redirect), not a fragment.
    assert page.locator("header.topbar").count() == 1
