// Post-visit checkout: save a card with the Payment Element (a SetupIntent: nothing is charged),
// or one tap on a saved card; payment_page.js does the shared work. The consent box must be ticked;
// the server records the consent before the card is confirmed. The page never decides the outcome:
// after Stripe.js answers, the server re-reads the SetupIntent and says where to go.
(function () {
  var form = document.getElementById("setup-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  var consent = document.getElementById("consent");
  var consentMessage = document.getElementById("consent-message");
  var page;

  function consentBody() {
    return "consent=1&version=" + encodeURIComponent(d.consentVersion) + "&then=" + encodeURIComponent(d.mode);
  }
  // The consent box must be ticked before anything is sent.
  function consented() {
    if (consent.checked) return true;
    page.show(page.text.consent_needed || "Please tick the box to agree to the charge after your visit.", consentMessage);
    consent.focus();
    return false;
  }
  // A typed card: the consent is recorded after the Payment Element's check, before Stripe.js confirms.
  async function recordConsent() {
    var agreed = await page.answer(await page.post(d.consentUrl, consentBody()));
    if (!agreed || agreed.state !== "consented") {
      page.show((agreed && agreed.message) || page.text.consent_unreachable
                || "We could not reach the clinic just now. Please try again.");
      page.setBusy(false); return false;
    }
    return true;
  }

  page = PaymentPage.start(form, {
    button: "setup-button", message: "setup-message",
    ended: d.mode === "book" ? "setup-ended" : null,   // other times are offered only when booking
    alsoClear: [consentMessage], controls: [consent],
    confirm: "confirmSetup",
    completeBody: "then=" + encodeURIComponent(d.mode),
    savedUrl: d.savedUrl,
    savedBody: function (chosen) {
      return consentBody() + "&payment_method=" + encodeURIComponent(chosen.dataset.paymentMethod);
    },
    allowed: consented,
    beforeConfirm: recordConsent,
    text: {
      canceled: "Nothing was charged.",
      pending: "Your card was saved and we are still confirming your booking. Nothing was charged. "
               + "Reload this page in a minute to see it.",
      declined: "Your card was declined. Please try another card.",
      unreachable: "We could not reach the clinic just now. Nothing was charged: reload the page to see "
                   + "where your booking stands."
    }
  });
})();
