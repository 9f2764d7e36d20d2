// Progressive enhancement only: every page works without it.
// Screen readers hear progress (a button's busy label) through base.html's polite status region.
function announce(text) {
  var region = document.getElementById("a11y-status");
  if (!region || !text) return;
  region.textContent = "";
  setTimeout(function () { region.textContent = text; }, 50);     // a change, even for the same words
}
// A plain (non-htmx) form cannot be submitted twice: its submit button is
// disabled and shows its busy label while the request is in flight.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.hasAttribute("hx-post")) return;            // htmx disables it (hx-disabled-elt)
  if (form.dataset.submitted === "1") { event.preventDefault(); return; }
  form.dataset.submitted = "1";
  form.querySelectorAll("button[type=submit]").forEach(function (button) {
    button.disabled = true;
    var busy = button.dataset.busyLabel, label = button.querySelector(".label");
    if (busy && label) label.textContent = busy;
    announce(busy);
  });
});
// An htmx form of several submit buttons (a day of slots): the tapped one shows it is working.
// Capture phase: htmx sends (and disables the buttons) from the form's own submit listener.
document.addEventListener("submit", function (event) {
  if (event.target.hasAttribute("hx-post") && event.submitter) {
    event.submitter.setAttribute("aria-busy", "true");
    announce(event.submitter.dataset.busyLabel);
  }
}, true);
// The request failed or answered in place: the tapped button stops saying it is busy. (On
// HX-Redirect htmx keeps the buttons disabled while the next page loads, so the spinner stays.)
document.addEventListener("htmx:afterRequest", function (event) {
  var xhr = event.detail.xhr;
  if (xhr && xhr.getResponseHeader("HX-Redirect")) return;
  event.detail.elt.querySelectorAll("[aria-busy=true]").forEach(function (el) { el.removeAttribute("aria-busy"); });
});
// Fill the timezone field from the device when the form offers one.
document.addEventListener("DOMContentLoaded", function () {
  var tz = document.querySelector("input[name=timezone]");
  if (tz && (!tz.value || tz.value === "UTC")) {
    try { tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || tz.value; } catch (e) {}
  }
});
// A hold's countdown: counts down each second; at zero says the hold expired.
function startCountdowns(root) {
  (root || document).querySelectorAll("[data-countdown-seconds]").forEach(function (el) {
    if (el.dataset.started) return;
    el.dataset.started = "1";
    var end = Date.now() + parseInt(el.dataset.countdownSeconds, 10) * 1000;
    var out = el.querySelector(".remaining");
    var tick = function () {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      if (out) out.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
      if (left <= 0) {
        el.hidden = true;
        var note = document.querySelector(".expired-note");
        if (note) note.hidden = false;
        return;
      }
      setTimeout(tick, 1000);
    };
    tick();
  });
}
document.addEventListener("DOMContentLoaded", function () { startCountdowns(); });
document.addEventListener("htmx:afterSettle", function (e) { startCountdowns(e.target); });
// A select marked data-submit-on-change sends its form when changed (no inline handler: CSP).
document.addEventListener("change", function (event) {
  var el = event.target;
  if (el.matches && el.matches("select[data-submit-on-change]") && el.form) {
    el.form.submit();
  }
});
// Focus for keyboards and screen readers (issue 17). `focusFirst(root)` moves focus to what a person
// must read first in `root`: an error summary, else the first field in error, else an alert, else the
// first heading, else `root` itself (made focusable with tabindex=-1 where it is not).
function focusFirst(root) {
  var target = root.querySelector(".error-summary") || root.querySelector("[aria-invalid=true]") ||
    root.querySelector("[role=alert]:not([hidden])") || root.querySelector("h1, h2, h3") || root;
  if (!target.matches("a[href], button, input, select, textarea, [tabindex]")) target.setAttribute("tabindex", "-1");
  target.focus();
}
// A page that comes back with errors (a form that did not go through) starts at its error summary / first error.
document.addEventListener("DOMContentLoaded", function () {
  var main = document.getElementById("main");
  if (main && main.querySelector(".error-summary, [aria-invalid=true]")) focusFirst(main);
});
// After an htmx swap the person asked for (a tap or a form sent), focus moves to the content that
// arrived; swaps nobody asked for (polling) leave focus where it is.
document.addEventListener("htmx:afterSettle", function (event) {
  var trigger = (event.detail.requestConfig || {}).triggeringEvent;
  if (!trigger || (trigger.type !== "submit" && trigger.type !== "click")) return;
  var root = event.target && event.target.isConnected ? event.target : event.detail.target;
  if (!root || !root.isConnected || root === document.body) return;
  focusFirst(root);
});
