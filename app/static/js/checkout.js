// Checkout with the Payment Element (Stripe.js, or the sandbox's copy of it).
// The page never decides the outcome: after Stripe.js answers, the server
// re-reads the PaymentIntent and says where to go.
(function () {
  var form = document.getElementById("payment-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  var stripe = Stripe(d.publishableKey);
  var elements = stripe.elements({ clientSecret: d.clientSecret, appearance: { theme: "stripe" } });
  var payment = elements.create("payment");
  payment.mount("#payment-element");
  // The wallets this phone has ready (Apple Pay, Google Pay): the Payment Element shows their buttons
  // (the intent enables automatic payment methods), and a decline mentions them. None: no mention.
  var wallets = [];
  if (typeof stripe.paymentRequest === "function") {
    try {
      stripe.paymentRequest({ country: "US", currency: d.currency || "usd",
        total: { label: "Visit", amount: parseInt(d.amount, 10) || 0 } }).canMakePayment().then(function (r) {
        if (r && r.applePay) wallets.push("Apple Pay");
        if (r && r.googlePay) wallets.push("Google Pay");
      }, function () {});
    } catch (err) { /* no wallets */ }
  }
  function walletHint() {
    if (!wallets.length) return "";
    var names = wallets.join(" or ");
    return " You can also pay with " + names + " on this phone: tap the " + names + " button, then Pay.";
  }
  var button = document.getElementById("pay-button");
  var message = document.getElementById("payment-message");
  var ended = document.getElementById("payment-ended");
  var saveCard = document.getElementById("save-card");
  var busy = false;        // a confirmation is under way: no second one
  var over = false;        // the payment cannot go on on this page (hold ended, slot lost)
  var saving = Promise.resolve();
  // While Stripe has the money authorized but the portal has not yet confirmed
  // the booking, ask again (the webhook and the poll job race us; any may win).
  var PENDING_DELAYS = [500, 1000, 1500, 2000, 3000, 5000, 5000, 10000];

  // Saved cards: one-tap buttons above the Payment Element (only for the signed-in patient).
  var savedButtons = Array.prototype.slice.call(document.querySelectorAll("#saved-cards button.saved-card"));
  var savedMessage = document.getElementById("saved-card-message");
  var shownIn = message;   // where the last message went: under the card form, or under the saved cards

  function show(text, where) {
    [message, savedMessage].forEach(function (el) { if (el) { el.textContent = ""; el.hidden = true; } });
    shownIn = where || message;
    shownIn.textContent = text || ""; shownIn.hidden = !text;
  }
  // One payment at a time, whichever button started it: every pay button waits while it runs.
  function setBusy(on, active) {
    busy = on;
    [button].concat(savedButtons).forEach(function (b) {
      var l = b.querySelector(".label");
      if (!b.dataset.idleLabel) b.dataset.idleLabel = l.textContent;
      var mine = on && b === (active || button);
      b.disabled = on || over;
      b.setAttribute("aria-busy", mine ? "true" : "false");
      l.textContent = mine ? b.dataset.busyLabel : b.dataset.idleLabel;
    });
    if (saveCard) saveCard.disabled = on || over;
  }
  // Nothing more can be paid on this page: say why, and offer the way on.
  function end(text, offerTimes) {
    over = true; setBusy(false); show(text, shownIn);
    [button].concat(savedButtons).forEach(function (b) { b.style.display = "none"; });
    if (ended && offerTimes) ended.hidden = false;
  }
  function wait(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", redirect: "manual",
      headers: { "X-CSRFToken": d.csrf, "Accept": "application/json",
                 "Content-Type": "application/x-www-form-urlencoded" }, body: body || "" });
  }
  // The server's verdict: {state, message, redirect}; null when it could not be read.
  async function complete() {
    try {
      var response = await post(d.completeUrl);
      if (response.type === "opaqueredirect" || response.status === 401) {   // signed out meanwhile
        window.location.reload(); return null;
      }
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === -1) return null;
      return await response.json();
    } catch (err) {
      return null;
    }
  }

  if (saveCard) saveCard.addEventListener("change", function () {
    var checked = saveCard.checked;
    saving = saving.then(function () {
      return post(d.saveCardUrl, "save=" + (checked ? "1" : "0")).then(function (r) {
        if (!r.ok) { saveCard.checked = !checked; }
      }, function () { saveCard.checked = !checked; });
    });
  });

  // The hold's end, as the countdown shows it: no payment starts after it.
  var timer = document.querySelector("[data-countdown-seconds]");
  if (timer) {
    var seconds = parseInt(timer.dataset.countdownSeconds, 10);
    if (!isNaN(seconds)) setTimeout(function () {
      if (!busy) end("", false);         // app.js shows "Your hold has expired" with its link
      else over = true;
    }, Math.max(0, seconds) * 1000);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    event.stopImmediatePropagation();
    if (busy || over) return;               // no double submit
    setBusy(true); show("");
    try {
      await saving;                         // "save this card" reaches the intent before it is confirmed
      var submitted = await elements.submit();
      if (submitted.error) { show(submitted.error.message); setBusy(false); return; }
      var result = await stripe.confirmPayment({ elements: elements,
        confirmParams: { return_url: d.returnUrl }, redirect: "if_required" });
      if (result.error && result.error.type === "validation_error") {
        show(result.error.message); setBusy(false); return;
      }
      var authorized = !result.error;
      var data = await complete();
      await verdict(data, authorized, result.error && result.error.message, message, function () {
        payment.focus();
      });
    } catch (err) {
      show("Something went wrong. Please check your card details and try again.");
      setBusy(false);
    }
  });

  // The server's verdict after a confirmation, the same for a typed card and a saved one.
  // ``authorized``: Stripe accepted the confirmation (it may still be settling on our side).
  async function verdict(data, authorized, stripeMessage, where, retry) {
    for (var i = 0; authorized && i < PENDING_DELAYS.length &&
         (!data || data.state === "pending" || data.state === "requires_action"); i++) {
      if (data && data.message) show(data.message, where);
      await wait(PENDING_DELAYS[i]);
      data = await complete();
    }
    if (data && data.state === "confirmed" && data.redirect) {
      window.location.assign(data.redirect); return;
    }
    if (data && (data.state === "slot_lost" || data.state === "canceled")) {
      show("", where);
      end(data.message || "This payment was canceled. You have not been charged.", true); return;
    }
    if (authorized && (!data || data.state === "pending" || data.state === "requires_action")) {
      // Stripe took the card; the booking will follow from the webhook or the poll.
      show("", where);
      end("Your payment went through and we are still confirming your booking. Please don't pay again: "
          + "reload this page in a minute to see it.", false);
      return;
    }
    var text = (data && data.message) || stripeMessage ||
         "Your card was declined. Please try another card or payment method.";
    show(data && data.state === "declined" && !over ? text + walletHint() : text, where);
    setBusy(false);
    if (over) end(shownIn.textContent, false);
    else if (retry) retry();
  }

  // One tap with a saved card: the server confirms on-session; if the bank asks for
  // 3-D Secure, Stripe.js shows its challenge, then the server re-reads the intent.
  async function paySaved(chosen) {
    if (busy || over) return;               // no double submit
    setBusy(true, chosen); show("", savedMessage);
    try {
      var response = await post(d.paySavedUrl,
        "payment_method=" + encodeURIComponent(chosen.dataset.paymentMethod));
      if (response.type === "opaqueredirect" || response.status === 401) { window.location.reload(); return; }
      var type = response.headers.get("Content-Type") || "";
      var data = type.indexOf("application/json") === -1 ? null : await response.json();
      var authorized = !!data && (data.state === "confirmed" || data.state === "pending" ||
                                  data.state === "requires_action");
      var stripeMessage = null;
      if (data && data.state === "requires_action" && data.client_secret) {
        var next = await stripe.handleNextAction({ clientSecret: data.client_secret });
        authorized = !next.error;
        stripeMessage = next.error && next.error.message;
        data = await complete();
      }
      if (!data) {
        show("We could not reach the clinic just now. You have not been charged twice: reload the page "
             + "to see where your payment stands.", savedMessage);
        setBusy(false);
        return;
      }
      await verdict(data, authorized, stripeMessage, savedMessage, function () { chosen.focus(); });
    } catch (err) {
      show("Something went wrong. Please try again or use another card.", savedMessage);
      setBusy(false);
    }
  }
  savedButtons.forEach(function (b) {
    b.addEventListener("click", function (event) { event.preventDefault(); paySaved(b); });
  });
})();
