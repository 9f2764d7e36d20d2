// Post-visit checkout: save a card with the Payment Element (a SetupIntent: nothing is charged),
// or one tap on a saved card. The consent box must be ticked; the server records the consent
// before the card is confirmed. The page never decides the outcome: after Stripe.js answers, the
// server re-reads the SetupIntent and says where to go.
(function () {
  var form = document.getElementById("setup-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  var stripe = Stripe(d.publishableKey);
  var elements = stripe.elements({ clientSecret: d.clientSecret, appearance: { theme: "stripe" } });
  var card = elements.create("payment");
  card.mount("#payment-element");

  var button = document.getElementById("setup-button");
  var message = document.getElementById("setup-message");
  var ended = document.getElementById("setup-ended");
  var consent = document.getElementById("consent");
  var consentMessage = document.getElementById("consent-message");
  var savedButtons = Array.prototype.slice.call(document.querySelectorAll("#saved-cards button.saved-card"));
  var savedMessage = document.getElementById("saved-card-message");
  var shownIn = message;
  var busy = false;        // a confirmation is under way: no second one
  var over = false;        // nothing more can happen on this page (hold ended, slot lost)
  // While Stripe has saved the card but the portal has not yet confirmed the booking, ask again
  // (the webhook races us; either may win).
  var PENDING_DELAYS = [500, 1000, 1500, 2000, 3000, 5000, 5000, 10000];

  function show(text, where) {
    [message, savedMessage, consentMessage].forEach(function (el) {
      if (el) { el.textContent = ""; el.hidden = true; }
    });
    shownIn = where || message;
    shownIn.textContent = text || ""; shownIn.hidden = !text;
  }
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
    consent.disabled = on || over;
  }
  function end(text, offerTimes) {
    over = true; setBusy(false); show(text, shownIn);
    [button].concat(savedButtons).forEach(function (b) { b.style.display = "none"; });
    if (ended && offerTimes && d.mode === "book") ended.hidden = false;
  }
  function wait(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", redirect: "manual",
      headers: { "X-CSRFToken": d.csrf, "Accept": "application/json",
                 "Content-Type": "application/x-www-form-urlencoded" }, body: body || "" });
  }
  // The server's JSON answer; null when it could not be read (signed out: the page reloads).
  async function answer(response) {
    if (response.type === "opaqueredirect" || response.status === 401) { window.location.reload(); return null; }
    var type = response.headers.get("Content-Type") || "";
    return type.indexOf("application/json") === -1 ? null : await response.json();
  }
  async function complete() {
    try {
      return await answer(await post(d.completeUrl, "then=" + encodeURIComponent(d.mode)));
    } catch (err) {
      return null;
    }
  }
  function consentBody() {
    return "consent=1&version=" + encodeURIComponent(d.consentVersion) + "&then=" + encodeURIComponent(d.mode);
  }
  // The consent box must be ticked before anything is sent.
  function consented() {
    if (consent.checked) return true;
    show("Please tick the box to agree to the charge after your visit.", consentMessage);
    consent.focus();
    return false;
  }

  // The hold's end, as the countdown shows it: no card is confirmed after it.
  var timer = document.querySelector("[data-countdown-seconds]");
  if (timer) {
    var seconds = parseInt(timer.dataset.countdownSeconds, 10);
    if (!isNaN(seconds)) setTimeout(function () {
      if (!busy) end("", false);          // app.js shows "Your hold has expired" with its link
      else over = true;
    }, Math.max(0, seconds) * 1000);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    event.stopImmediatePropagation();
    if (busy || over) return;                // no double submit
    if (!consented()) return;
    setBusy(true); show("");
    try {
      var submitted = await elements.submit();
      if (submitted.error) { show(submitted.error.message); setBusy(false); return; }
      var agreed = await answer(await post(d.consentUrl, consentBody()));
      if (!agreed || agreed.state !== "consented") {
        show((agreed && agreed.message) || "We could not reach the clinic just now. Please try again.");
        setBusy(false); return;
      }
      var result = await stripe.confirmSetup({ elements: elements,
        confirmParams: { return_url: d.returnUrl }, redirect: "if_required" });
      if (result.error && result.error.type === "validation_error") {
        show(result.error.message); setBusy(false); return;
      }
      var saved = !result.error;
      await verdict(await complete(), saved, result.error && result.error.message, message, function () {
        card.focus();
      });
    } catch (err) {
      show("Something went wrong. Please check your card details and try again.");
      setBusy(false);
    }
  });

  // The server's verdict after a confirmation, the same for a typed card and a saved one.
  // ``saved``: Stripe accepted the card (our side may still be catching up).
  async function verdict(data, saved, stripeMessage, where, retry) {
    for (var i = 0; saved && i < PENDING_DELAYS.length &&
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
      end(data.message || "Nothing was charged.", true); return;
    }
    if (saved && (!data || data.state === "pending" || data.state === "requires_action")) {
      show("", where);
      end("Your card was saved and we are still confirming your booking. Nothing was charged. "
          + "Reload this page in a minute to see it.", false);
      return;
    }
    show((data && data.message) || stripeMessage ||
         "Your card was declined. Please try another card.", where);
    setBusy(false);
    if (over) end(shownIn.textContent, false);
    else if (retry) retry();
  }

  // One tap on a saved card: the server confirms the SetupIntent with it; if the bank asks for
  // 3-D Secure, Stripe.js shows its challenge, then the server re-reads the SetupIntent.
  async function useSaved(chosen) {
    if (busy || over) return;                // no double submit
    if (!consented()) return;
    setBusy(true, chosen); show("", savedMessage);
    try {
      var data = await answer(await post(d.savedUrl, consentBody() + "&payment_method=" +
                                         encodeURIComponent(chosen.dataset.paymentMethod)));
      var saved = !!data && (data.state === "confirmed" || data.state === "pending" ||
                             data.state === "requires_action");
      var stripeMessage = null;
      if (data && data.state === "requires_action" && data.client_secret) {
        var next = await stripe.handleNextAction({ clientSecret: data.client_secret });
        saved = !next.error;
        stripeMessage = next.error && next.error.message;
        data = await complete();
      }
      if (!data) {
        show("We could not reach the clinic just now. Nothing was charged: reload the page to see "
             + "where your booking stands.", savedMessage);
        setBusy(false);
        return;
      }
      await verdict(data, saved, stripeMessage, savedMessage, function () { chosen.focus(); });
    } catch (err) {
      show("Something went wrong. Please try again or use another card.", savedMessage);
      setBusy(false);
    }
  }
  savedButtons.forEach(function (b) {
    b.addEventListener("click", function (event) { event.preventDefault(); useSaved(b); });
  });
})();
