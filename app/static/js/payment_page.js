// What the three card pages share (checkout.js: pay to book; setup.js: save a card for a post-visit
// visit; pay.js: a post-visit balance): the Payment Element, one confirmation at a time whichever
// button started it, posts with the CSRF header, the server's JSON verdict, and one tap on a saved
// card with 3-D Secure handed back to Stripe.js. Loaded before the page's own script, which calls
// ``PaymentPage.start(form, options)`` and keeps only what is its own (words, extra steps).
// The page never decides the outcome: after Stripe.js answers, the server re-reads the intent and
// says where to go.
(function () {
  // While Stripe has accepted the card but the portal has not caught up, ask again (the webhook and
  // the poll job race us; any may win).
  var PENDING_DELAYS = [500, 1000, 1500, 2000, 3000, 5000, 5000, 10000];

  function byId(id) { return id ? document.getElementById(id) : null; }
  function wait(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function waiting(data) { return !data || data.state === "pending" || data.state === "requires_action"; }
  // The page's words in its language: a JSON data block (<script type="application/json" id="page-text">)
  // the template renders with gettext; English (the scripts' own words) when it is missing.
  function pageText() {
    var el = document.getElementById("page-text");
    if (!el) return {};
    try { return JSON.parse(el.textContent) || {}; } catch (err) { return {}; }
  }

  // options:
  //   button, message, ended   ids of the submit button, the form's message, the "Pick another time" box
  //   alsoClear                more message elements that a new message clears
  //   controls                 more inputs disabled while a confirmation runs (null ones are skipped)
  //   confirm                  "confirmPayment" or "confirmSetup"
  //   completeBody             the body posted to data-complete-url
  //   savedUrl, savedBody(b)   where a saved card's tap posts, and what
  //   allowed()                false: nothing starts (it has said why)
  //   beforeSubmit()           awaited before the Payment Element is submitted
  //   beforeConfirm()          awaited after it; false: stop (it has said why and ended the busy state)
  //   redirectOn, endOn        states whose redirect is followed / that end the page
  //   hint(text)               words added to a decline (the page is still open)
  //   text: {canceled, pending, declined, unreachable}  English; the page's #page-text overrides them
  function start(form, o) {
    var d = form.dataset;
    var stripe = Stripe(d.publishableKey);
    var elements = stripe.elements({ clientSecret: d.clientSecret, appearance: { theme: "stripe" } });
    var element = elements.create("payment");
    element.mount("#payment-element");

    var button = byId(o.button);
    var message = byId(o.message);
    var ended = byId(o.ended);
    var savedButtons = Array.prototype.slice.call(document.querySelectorAll("#saved-cards button.saved-card"));
    var savedMessage = document.getElementById("saved-card-message");
    var messages = [message, savedMessage].concat(o.alsoClear || []);
    var controls = (o.controls || []).filter(function (c) { return !!c; });
    var redirectOn = o.redirectOn || ["confirmed"];
    var endOn = o.endOn || ["slot_lost", "canceled"];
    var text = {}, words = pageText(), key;
    for (key in o.text) text[key] = o.text[key];
    for (key in words) if (words[key]) text[key] = words[key];
    var shownIn = message;   // where the last message went: under the card form, or under the saved cards
    var state = { busy: false, over: false };   // over: nothing more can happen on this page

    function show(words, where) {
      messages.forEach(function (el) { if (el) { el.textContent = ""; el.hidden = true; } });
      shownIn = where || message;
      shownIn.textContent = words || ""; shownIn.hidden = !words;
    }
    // One confirmation at a time, whichever button started it: every button waits while it runs.
    function setBusy(on, active) {
      state.busy = on;
      [button].concat(savedButtons).forEach(function (b) {
        var l = b.querySelector(".label");
        if (!b.dataset.idleLabel) b.dataset.idleLabel = l.textContent;
        var mine = on && b === (active || button);
        b.disabled = on || state.over;
        b.setAttribute("aria-busy", mine ? "true" : "false");
        l.textContent = mine ? b.dataset.busyLabel : b.dataset.idleLabel;
        if (mine && window.announce) window.announce(b.dataset.busyLabel);     // app.js: said out loud
      });
      controls.forEach(function (c) { c.disabled = on || state.over; });
    }
    // Nothing more can be done on this page: say why, and offer the way on.
    function end(words, offerTimes) {
      state.over = true; setBusy(false); show(words, shownIn);
      [button].concat(savedButtons).forEach(function (b) { b.style.display = "none"; });
      if (ended && offerTimes) ended.hidden = false;
    }
    function post(url, body) {
      return fetch(url, { method: "POST", credentials: "same-origin", redirect: "manual",
        headers: { "X-CSRFToken": d.csrf, "Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded" }, body: body || "" });
    }
    // The server's JSON answer; null when it could not be read (signed out meanwhile: the page reloads).
    var reloading = false;
    async function answer(response) {
      if (response.type === "opaqueredirect" || response.status === 401) {
        reloading = true; window.location.reload(); return null;
      }
      var type = response.headers.get("Content-Type") || "";
      return type.indexOf("application/json") === -1 ? null : await response.json();
    }
    // The server's verdict: {state, message, redirect}; null when it could not be read.
    async function complete() {
      try { return await answer(await post(d.completeUrl, o.completeBody)); } catch (err) { return null; }
    }

    // The server's verdict after a confirmation, the same for a typed card and a saved one.
    // ``accepted``: Stripe accepted the confirmation (our side may still be catching up).
    async function verdict(data, accepted, stripeMessage, where, retry) {
      for (var i = 0; accepted && i < PENDING_DELAYS.length && waiting(data); i++) {
        if (data && data.message) show(data.message, where);
        await wait(PENDING_DELAYS[i]);
        data = await complete();
      }
      if (data && redirectOn.indexOf(data.state) !== -1 && data.redirect) {
        window.location.assign(data.redirect); return;
      }
      if (data && endOn.indexOf(data.state) !== -1) {
        show("", where);
        end(data.message || text.canceled, true); return;
      }
      if (accepted && waiting(data)) {
        // Stripe took the card; the rest follows from the webhook or the poll.
        show("", where);
        end(text.pending, false);
        return;
      }
      var words = (data && data.message) || stripeMessage || text.declined;
      show(o.hint && data && data.state === "declined" && !state.over ? words + o.hint() : words, where);
      setBusy(false);
      if (state.over) end(shownIn.textContent, false);
      else if (retry) retry();
    }

    // The hold's end, as the countdown shows it: nothing is confirmed after it.
    var timer = document.querySelector("[data-countdown-seconds]");
    if (timer) {
      var seconds = parseInt(timer.dataset.countdownSeconds, 10);
      if (!isNaN(seconds)) setTimeout(function () {
        if (!state.busy) end("", false);    // app.js shows "Your hold has expired" with its link
        else state.over = true;
      }, Math.max(0, seconds) * 1000);
    }

    // A typed card: the Payment Element, then Stripe.js confirms, then the server says.
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      event.stopImmediatePropagation();
      if (state.busy || state.over) return;    // no double submit
      if (o.allowed && !o.allowed()) return;
      setBusy(true); show("");
      try {
        if (o.beforeSubmit) await o.beforeSubmit();
        var submitted = await elements.submit();
        if (submitted.error) { show(submitted.error.message); setBusy(false); return; }
        if (o.beforeConfirm && !(await o.beforeConfirm())) return;
        var result = await stripe[o.confirm]({ elements: elements,
          confirmParams: { return_url: d.returnUrl }, redirect: "if_required" });
        if (result.error && result.error.type === "validation_error") {
          show(result.error.message); setBusy(false); return;
        }
        var accepted = !result.error;
        await verdict(await complete(), accepted, result.error && result.error.message, message, function () {
          element.focus();
        });
      } catch (err) {
        show(text.error_card || "Something went wrong. Please check your card details and try again.");
        setBusy(false);
      }
    });

    // One tap on a saved card: the server confirms on-session; if the bank asks for 3-D Secure,
    // Stripe.js shows its challenge, then the server re-reads the intent.
    async function useSaved(chosen) {
      if (state.busy || state.over) return;    // no double submit
      if (o.allowed && !o.allowed()) return;
      setBusy(true, chosen); show("", savedMessage);
      try {
        var data = await answer(await post(o.savedUrl, o.savedBody(chosen)));
        if (reloading) return;
        var accepted = !!data && (data.state === "confirmed" || data.state === "pending" ||
                                  data.state === "requires_action");
        var stripeMessage = null;
        if (data && data.state === "requires_action" && data.client_secret) {
          var next = await stripe.handleNextAction({ clientSecret: data.client_secret });
          accepted = !next.error;
          stripeMessage = next.error && next.error.message;
          data = await complete();
        }
        if (!data) {
          show(text.unreachable, savedMessage);
          setBusy(false);
          return;
        }
        await verdict(data, accepted, stripeMessage, savedMessage, function () { chosen.focus(); });
      } catch (err) {
        show(text.error_saved || "Something went wrong. Please try again or use another card.", savedMessage);
        setBusy(false);
      }
    }
    savedButtons.forEach(function (b) {
      b.addEventListener("click", function (event) { event.preventDefault(); useSaved(b); });
    });

    return { data: d, stripe: stripe, state: state, show: show, setBusy: setBusy, post: post, answer: answer,
             text: text };
  }

  window.PaymentPage = { start: start };
})();
