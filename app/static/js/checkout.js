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
  var saveCard = document.getElementById("save-card");
  var busy = false;

  function show(text) { message.textContent = text || ""; message.hidden = !text; }
  function setBusy(on) {
    busy = on; button.disabled = on; label.textContent = on ? button.dataset.busyLabel : idle;
  }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": d.csrf, "Content-Type": "application/x-www-form-urlencoded" }, body: body || "" });
  }
  if (saveCard) saveCard.addEventListener("change", function () {
    post(d.saveCardUrl, "save=" + (saveCard.checked ? "1" : "0"));
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) return;                       // no double submit
    setBusy(true); show("");
    try {
      var submitted = await elements.submit();
      if (submitted.error) { show(submitted.error.message); setBusy(false); return; }
      var result = await stripe.confirmPayment({ elements: elements,
        confirmParams: { return_url: d.returnUrl }, redirect: "if_required" });
      var response = await post(d.completeUrl);
      var data = await response.json();
      if (data.redirect && data.state !== "declined") { window.location.assign(data.redirect); return; }
      show(data.message || (result.error && result.error.message) || "");
      setBusy(false);
    } catch (err) {
      show("Something went wrong. Your card has not been charged; please try again.");
      setBusy(false);
    }
  });
})();
