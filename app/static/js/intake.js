// The intake's insurance step (progressive enhancement: without it every field shows and works).
// - "I'll pay myself" hides the insurance fields; the second insurance shows when its box is ticked.
// - A card photo is shrunk on the phone before it is sent (longest side 1600 px, JPEG), so a camera
//   picture fits the request limit; the original never leaves the device when it is shrunk.
(function () {
  var form = document.getElementById("insurance-form");
  if (!form) return;
  var insuranceOnly = form.querySelector("[data-insurance-only]");
  var secondary = form.querySelector("[data-secondary]");
  var secondaryBox = document.getElementById("f-has_secondary");

  function sync() {
    var choice = form.querySelector("input[name=coverage_choice]:checked");
    if (insuranceOnly) insuranceOnly.hidden = !!(choice && choice.value === "self_pay");
    if (secondary && secondaryBox) secondary.hidden = !secondaryBox.checked;
  }
  form.addEventListener("change", function (event) {
    if (event.target.name === "coverage_choice" || event.target === secondaryBox) sync();
  });
  sync();

  var MAX_SIDE = 1600, TARGET_BYTES = 600000;
  function shrink(input) {
    var file = input.files && input.files[0];
    if (!file || !/^image\//.test(file.type) || !window.createImageBitmap || !window.DataTransfer) return;
    if (file.size <= TARGET_BYTES && file.type === "image/jpeg") return;
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    createImageBitmap(file).then(function (bitmap) {
      var scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.82); });
    }).then(function (blob) {
      if (!blob) return;
      var transfer = new DataTransfer();
      transfer.items.add(new File([blob], "card.jpg", {type: "image/jpeg"}));
      input.files = transfer.files;
    }).catch(function () { /* left as chosen: the server says if it is too large */ })
      .then(function () { if (button) button.disabled = false; });
  }
  form.querySelectorAll("input[data-card-photo]").forEach(function (input) {
    input.addEventListener("change", function () { shrink(input); });
  });
})();
