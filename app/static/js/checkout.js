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
  var button = document.getElementById("pay-button");
  var label = button.querySelector(".label");
  var idle = label.textContent;
  var message = document.getElementById("payment-message");
  var ended = document.getElementById("payment-ended");
  var saveCard = document.getElementById("save-card");
  var busy = false;        // a confirmation is under way: no second one
  var over = false;        // the payment cannot go on on this page (hold ended, slot lost)
  var saving = Promise.resolve();
  // While Stripe has the money authorized but the portal has not yet confirmed
  // the booking, ask again (the webhook and the poll job race us; any may win).
  var PENDING_DELAYS = [500, 1000, 1500, 2000, 3000, 5000, 5000, 10000];

  function show(text) { message.textContent = text || ""; message.hidden = !text; }
  function setBusy(on) {
    busy = on;
    button.disabled = on || over;
    button.setAttribute("aria-busy", on ? "true" : "false");
    label.textContent = on ? button.dataset.busyLabel : idle;
    if (saveCard) saveCard.disabled = on || over;
  }
  // Nothing more can be paid on this page: say why, and offer the way on.
  function end(text, offerTimes) {
    over = true; setBusy(false); show(text);
    button.style.display = "none";
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
      for (var i = 0; authorized && i < PENDING_DELAYS.length &&
           (!data || data.state === "pending" || data.state === "requires_action"); i++) {
        if (data && data.message) show(data.message);
        await wait(PENDING_DELAYS[i]);
        data = await complete();
      }
      if (data && data.state === "confirmed" && data.redirect) {
        window.location.assign(data.redirect); return;
      }
      if (data && (data.state === "slot_lost" || data.state === "canceled")) {
        end(data.message || "This payment was canceled. You have not been charged.", true); return;
      }
      if (authorized && (!data || data.state === "pending" || data.state === "requires_action")) {
        // Stripe took the card; the booking will follow from the webhook or the poll.
        end("Your payment went through and we are still confirming your booking. Please don't pay again: "
            + "reload this page in a minute to see it.", false);
        return;
      }
      show((data && data.message) || result.error.message ||
           "Your card was declined. Please try another card or payment method.");
      setBusy(false);
      if (over) end(message.textContent, false);
      else payment.focus();
    } catch (err) {
      show("Something went wrong. Please check your card details and try again.");
      setBusy(false);
    }
  });
})();
