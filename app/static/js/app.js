// Progressive enhancement only: every page works without it.
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
  });
});
// An htmx form of several submit buttons (a day of slots): the tapped one shows it is working.
// Capture phase: htmx sends (and disables the buttons) from the form's own submit listener.
document.addEventListener("submit", function (event) {
  if (event.target.hasAttribute("hx-post") && event.submitter) event.submitter.setAttribute("aria-busy", "true");
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
