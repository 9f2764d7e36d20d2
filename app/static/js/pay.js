// The post-visit pay page: a saved card in one tap (the server confirms on-session; 3-D Secure is
// handed back here) or a new card in the Payment Element. The page never decides the outcome:
// after Stripe.js answers, the server re-reads the PaymentIntent and says where to go.
(function () {
  var form = document.getElementById("payment-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  var stripe = Stripe(d.publishableKey);
  var elements = stripe.elements({ clientSecret: d.clientSecret, appearance: { theme: "stripe" } });
  var payment = elements.create("payment");
  payment.mount("#payment-element");
  var button = document.getElementById("pay-button");
  var message = document.getElementById("payment-message");
  var savedButtons = Array.prototype.slice.call(document.querySelectorAll("#saved-cards button.saved-card"));
  var savedMessage = document.getElementById("saved-card-message");
  var busy = false;          // a payment is under way: no second one
  var PENDING_DELAYS = [500, 1000, 1500, 2000, 3000, 5000, 5000, 10000];

  function show(text, where) {
    [message, savedMessage].forEach(function (el) { if (el) { el.textContent = ""; el.hidden = true; } });
    var target = where || message;
    target.textContent = text || ""; target.hidden = !text;
  }
  function setBusy(on, active) {
    busy = on;
    [button].concat(savedButtons).forEach(function (b) {
      var l = b.querySelector(".label");
      if (!b.dataset.idleLabel) b.dataset.idleLabel = l.textContent;
      var mine = on && b === (active || button);
      b.disabled = on;
      b.setAttribute("aria-busy", mine ? "true" : "false");
      l.textContent = mine ? b.dataset.busyLabel : b.dataset.idleLabel;
    });
  }
  function wait(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", redirect: "manual",
      headers: { "X-CSRFToken": d.csrf, "Accept": "application/json",
                 "Content-Type": "application/x-www-form-urlencoded" }, body: body || "" });
  }
  async function json(response) {
    if (response.type === "opaqueredirect" || response.status === 401) { window.location.reload(); return null; }
    var type = response.headers.get("Content-Type") || "";
    return type.indexOf("application/json") === -1 ? null : await response.json();
  }
  async function complete() {
    try { return await json(await post(d.completeUrl)); } catch (err) { return null; }
  }

  // The server's verdict after a confirmation; ``authorized``: Stripe accepted it (it may still be settling).
  async function verdict(data, authorized, stripeMessage, where, retry) {
    for (var i = 0; authorized && i < PENDING_DELAYS.length &&
         (!data || data.state === "pending" || data.state === "requires_action"); i++) {
      if (data && data.message) show(data.message, where);
      await wait(PENDING_DELAYS[i]);
      data = await complete();
    }
    if (data && (data.state === "confirmed" || data.state === "canceled") && data.redirect) {
      window.location.assign(data.redirect); return;
    }
    if (authorized && (!data || data.state === "pending" || data.state === "requires_action")) {
      show("Your payment went through and we are still recording it. Please don't pay again: "
           + "reload this page in a minute to see it.", where);
      [button].concat(savedButtons).forEach(function (b) { b.style.display = "none"; });
      busy = true;
      return;
    }
    show((data && data.message) || stripeMessage ||
         "Your card was declined. Please try another card.", where);
    setBusy(false);
    if (retry) retry();
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    event.stopImmediatePropagation();
    if (busy) return;                       // no double submit
    setBusy(true); show("");
    try {
      var submitted = await elements.submit();
      if (submitted.error) { show(submitted.error.message); setBusy(false); return; }
      var result = await stripe.confirmPayment({ elements: elements,
        confirmParams: { return_url: d.returnUrl }, redirect: "if_required" });
      if (result.error && result.error.type === "validation_error") {
        show(result.error.message); setBusy(false); return;
      }
      var data = await complete();
      await verdict(data, !result.error, result.error && result.error.message, message,
                    function () { payment.focus(); });
    } catch (err) {
      show("Something went wrong. Please check your card details and try again.");
      setBusy(false);
    }
  });

  async function paySaved(chosen) {
    if (busy) return;                       // no double submit
    setBusy(true, chosen); show("", savedMessage);
    try {
      var data = await json(await post(d.paySavedUrl,
        "payment_method=" + encodeURIComponent(chosen.dataset.paymentMethod)));
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
