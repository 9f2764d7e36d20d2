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
// Fill the timezone field from the device when the form offers one.
document.addEventListener("DOMContentLoaded", function () {
  var tz = document.querySelector("input[name=timezone]");
  if (tz && (!tz.value || tz.value === "UTC")) {
    try { tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || tz.value; } catch (e) {}
  }
});
