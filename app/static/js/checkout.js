// Checkout with the Payment Element (Stripe.js, or the sandbox's copy of it): pay to book, with a
// typed card or one tap on a saved one. payment_page.js does the shared work; this page adds the
// "save this card" box and the wallets this phone has. A hybrid visit's deposit (data-consent-url)
// adds the required consent to the balance after the insurer answers: recorded by the server before
// Stripe.js confirms (a typed card) or with the tap (a saved card). The page never decides the
// outcome: after Stripe.js answers, the server re-reads the PaymentIntent and says where to go.
(function () {
  var form = document.getElementById("payment-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  var saveCard = document.getElementById("save-card");
  var consent = d.consentUrl ? document.getElementById("consent") : null;
  var consentMessage = document.getElementById("consent-message");
  var saving = Promise.resolve();
  var page;

  function consentBody() {
    return "consent=1&version=" + encodeURIComponent(d.consentVersion || "");
  }
  // The consent box must be ticked before anything is sent.
  function consented() {
    if (!consent || consent.checked) return true;
    page.show(page.text.consent_needed || "Please tick the box to agree to the charge or refund after your insurer answers.",
              consentMessage);
    consent.focus();
    return false;
  }
  // A typed card: the consent is recorded after the Payment Element's check, before Stripe.js confirms.
  async function recordConsent() {
    if (!consent) return true;
    var agreed = await page.answer(await page.post(d.consentUrl, consentBody()));
    if (!agreed || agreed.state !== "consented") {
      page.show((agreed && agreed.message) || page.text.consent_unreachable
                || "We could not reach the clinic just now. Please try again.");
      page.setBusy(false); return false;
    }
    return true;
  }
  // The wallets this phone has ready (Apple Pay, Google Pay): the Payment Element shows their buttons
  // (the intent enables automatic payment methods), and a decline mentions them. None: no mention.
  var wallets = [];
  function walletHint() {
    if (!wallets.length) return "";
    var names = wallets.length > 1
      ? (page.text.wallet_or || "{first} or {second}").replace("{first}", wallets[0]).replace("{second}", wallets[1])
      : wallets[0];
    return " " + (page.text.wallet_hint || "You can also pay with {wallets} on this phone: tap the {wallets} button, then Pay.")
      .split("{wallets}").join(names);
  }

  page = PaymentPage.start(form, {
    button: "pay-button", message: "payment-message", ended: "payment-ended",
    alsoClear: consentMessage ? [consentMessage] : [],
    controls: [saveCard, consent],
    confirm: "confirmPayment",
    savedUrl: d.paySavedUrl,
    savedBody: function (chosen) {
      var body = "payment_method=" + encodeURIComponent(chosen.dataset.paymentMethod);
      return consent ? consentBody() + "&" + body : body;
    },
    allowed: consented,
    beforeSubmit: function () { return saving; },   // "save this card" reaches the intent before it is confirmed
    beforeConfirm: recordConsent,
    hint: walletHint,
    text: {
      canceled: "This payment was canceled. You have not been charged.",
      pending: "Your payment went through and we are still confirming your booking. Please don't pay again: "
               + "reload this page in a minute to see it.",
      declined: "Your card was declined. Please try another card or payment method.",
      unreachable: "We could not reach the clinic just now. You have not been charged twice: reload the page "
                   + "to see where your payment stands."
    }
  });

  var stripe = page.stripe;
  if (typeof stripe.paymentRequest === "function") {
    try {
      stripe.paymentRequest({ country: "US", currency: d.currency || "usd",
        total: { label: "Visit", amount: parseInt(d.amount, 10) || 0 } }).canMakePayment().then(function (r) {
        if (r && r.applePay) wallets.push("Apple Pay");
        if (r && r.googlePay) wallets.push("Google Pay");
      }, function () {});
    } catch (err) { /* no wallets */ }
  }

  if (saveCard) saveCard.addEventListener("change", function () {
    var checked = saveCard.checked;
    saving = saving.then(function () {
      return page.post(d.saveCardUrl, "save=" + (checked ? "1" : "0")).then(function (r) {
        if (!r.ok) { saveCard.checked = !checked; }
      }, function () { saveCard.checked = !checked; });
    });
  });
})();
