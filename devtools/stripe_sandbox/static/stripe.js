/* Stripe.js for the offline Stripe sandbox (devtools/stripe_sandbox).
 *
 * Implements the part of https://js.stripe.com/v3/ the portal uses:
 *   Stripe(pk), stripe.elements({clientSecret, appearance}), elements.create('payment'),
 *   element.mount(selector|element), element.on('change'|'ready'|'focus'|'blur', cb), elements.submit(),
 *   stripe.confirmPayment(...), stripe.confirmSetup(...), stripe.handleNextAction({clientSecret}),
 *   stripe.retrievePaymentIntent(clientSecret), stripe.retrieveSetupIntent(clientSecret),
 *   stripe.paymentRequest(options).canMakePayment().
 * The card fields live in the host page (no iframe).  Card data goes only to the sandbox API.
 *
 * Wallets (Apple Pay, Google Pay): a page tells the sandbox what "the device" supports, as a phone would
 * report it, with any of
 *   window.__stripeSandboxWallets = ["apple_pay", "google_pay"]   (e.g. from a test's init script)
 *   ?stripe_sandbox_wallets=apple_pay,google_pay                  (the host page's query string)
 *   localStorage.stripeSandboxWallets = "apple_pay,google_pay"
 * Default: none.  When the intent has automatic_payment_methods enabled, the Payment Element then shows
 * one button per supported wallet; choosing one and confirming opens a sandbox "wallet sheet" (a dialog,
 * no real wallet) where a test card is picked; it becomes a card PaymentMethod with card.wallet.type set.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var API = script && script.src ? new URL(script.src).origin : window.location.origin;
  // A page with a Content-Security-Policy gives this script tag its nonce; our one <style> carries it too.
  var NONCE = (script && (script.nonce || script.getAttribute("nonce"))) || "";
  var uid = 0;

  function IntegrationError(message) {
    var e = new Error(message);
    e.name = "IntegrationError";
    return e;
  }

  function encode(obj, prefix, out) {
    out = out || [];
    Object.keys(obj).forEach(function (k) {
      var v = obj[k];
      var key = prefix ? prefix + "[" + k + "]" : k;
      if (v === undefined || v === null) return;
      if (Array.isArray(v)) {
        v.forEach(function (item) {
          if (typeof item === "object") encode(item, key + "[]", out);
          else out.push(encodeURIComponent(key + "[]") + "=" + encodeURIComponent(item));
        });
      } else if (typeof v === "object") {
        encode(v, key, out);
      } else {
        out.push(encodeURIComponent(key) + "=" + encodeURIComponent(String(v)));
      }
    });
    return out;
  }

  function connectionError() {
    return {
      error: {
        type: "api_connection_error",
        message: "We could not connect to the payment service. Check your connection and try again.",
      },
    };
  }

  function luhn(num) {
    var sum = 0;
    for (var i = 0; i < num.length; i++) {
      var d = parseInt(num.charAt(num.length - 1 - i), 10);
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function intentIdFromSecret(secret) {
    var m = /^((pi|seti)_[A-Za-z0-9]+)_secret_/.exec(secret || "");
    if (!m) throw IntegrationError("Invalid value for clientSecret: it should be a client secret of the form ${id}_secret_${secret}.");
    return m[1];
  }

  /* ---------------- wallets (what "the device" supports) ---------------- */
  var WALLETS = { apple_pay: "Apple Pay", google_pay: "Google Pay" };
  function supportedWallets() {
    var raw = window.__stripeSandboxWallets;
    if (raw == null) {
      try { raw = new URLSearchParams(window.location.search).get("stripe_sandbox_wallets"); } catch (e) { raw = null; }
    }
    if (raw == null) {
      try { raw = window.localStorage && window.localStorage.getItem("stripeSandboxWallets"); } catch (e) { raw = null; }
    }
    if (raw == null) return [];
    var list = Array.isArray(raw) ? raw : String(raw).split(",");
    return Object.keys(WALLETS).filter(function (w) {
      return list.some(function (x) { return String(x).trim() === w; });
    });
  }
  // The wallet sheet's test cards (Stripe's test numbers; same behaviour as typed in the card form).
  var WALLET_CARDS = [
    ["4242424242424242", "Visa \u2022\u2022\u2022\u2022 4242"],
    ["5555555555554444", "Mastercard \u2022\u2022\u2022\u2022 4444"],
    ["4000000000000002", "Visa \u2022\u2022\u2022\u2022 0002 (declined)"],
    ["4000000000009995", "Visa \u2022\u2022\u2022\u2022 9995 (insufficient funds)"],
    ["4000000000009987", "Visa \u2022\u2022\u2022\u2022 9987 (lost card)"],
    ["4000000000000069", "Visa \u2022\u2022\u2022\u2022 0069 (expired card)"],
    ["4000002500003155", "Visa \u2022\u2022\u2022\u2022 3155 (3-D Secure)"],
    ["4000008400001629", "Visa \u2022\u2022\u2022\u2022 1629 (3-D Secure, then declined)"],
  ];

  /* ---------------- styles ---------------- */
  var styleInjected = false;
  function injectStyles(appearance) {
    var vars = (appearance && appearance.variables) || {};
    var primary = vars.colorPrimary || "#0570de";
    var radius = vars.borderRadius || "6px";
    var font = vars.fontFamily || "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    var danger = vars.colorDanger || "#df1b41";
    var css =
      ".sbx-pe{font-family:" + font + ";display:grid;gap:12px;width:100%;box-sizing:border-box}" +
      ".sbx-pe *{box-sizing:border-box}" +
      ".sbx-pe .sbx-row{display:grid;grid-template-columns:1fr 1fr;gap:12px}" +
      ".sbx-pe label{display:grid;gap:4px;font-size:14px;color:#30313d}" +
      ".sbx-pe input{width:100%;min-height:44px;font-size:16px;padding:10px 12px;border:1px solid #e6e6e6;" +
      "border-radius:" + radius + ";background:#fff;color:#30313d}" +
      ".sbx-pe input:focus{outline:2px solid " + primary + ";outline-offset:0;border-color:" + primary + "}" +
      ".sbx-pe input[aria-invalid=true]{border-color:" + danger + "}" +
      ".sbx-pe .sbx-error{color:" + danger + ";font-size:14px;min-height:1em}" +
      ".sbx-pe .sbx-card{display:grid;gap:12px}" +
      ".sbx-pe .sbx-wallets{display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:12px}" +
      ".sbx-pe .sbx-wallet,.sbx-pe .sbx-use-card{min-height:44px;font-size:16px;border-radius:" + radius + ";" +
      "cursor:pointer;padding:10px 12px;font-family:inherit}" +
      ".sbx-pe .sbx-wallet{background:#000;color:#fff;border:1px solid #000;font-weight:600}" +
      ".sbx-pe .sbx-wallet[aria-pressed=true]{outline:3px solid " + primary + ";outline-offset:2px}" +
      ".sbx-pe .sbx-use-card{background:#fff;color:#30313d;border:1px solid #e6e6e6}" +
      ".sbx-pe .sbx-wallet-note{display:grid;gap:12px;font-size:14px;color:#30313d}" +
      ".sbx-pe .sbx-wallet-note p{margin:0}" +
      ".sbx-pe [hidden],.sbx-3ds [hidden]{display:none!important}" +
      ".sbx-3ds label{font-size:14px;color:#30313d}" +
      ".sbx-3ds select{width:100%;min-height:44px;font-size:16px;padding:8px;border:1px solid #ccc;border-radius:6px;" +
      "background:#fff;color:#30313d}" +
      ".sbx-3ds-backdrop{position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;" +
      "justify-content:center;z-index:2147483647;padding:16px}" +
      ".sbx-3ds{background:#fff;border-radius:8px;max-width:420px;width:100%;padding:20px;font-family:" + font + ";" +
      "display:grid;gap:12px;box-shadow:0 10px 40px rgba(0,0,0,.3)}" +
      ".sbx-3ds h2{margin:0;font-size:18px}.sbx-3ds p{margin:0;font-size:14px;color:#30313d}" +
      ".sbx-3ds button{min-height:44px;font-size:16px;border-radius:6px;border:1px solid #ccc;cursor:pointer}" +
      ".sbx-3ds .sbx-complete{background:" + primary + ";color:#fff;border-color:" + primary + "}";
    var el = document.getElementById("sbx-stripe-styles");
    if (!el) {
      el = document.createElement("style");
      el.id = "sbx-stripe-styles";
      if (NONCE) el.setAttribute("nonce", NONCE);
      document.head.appendChild(el);
    }
    if (!styleInjected || appearance) el.textContent = css;
    styleInjected = true;
  }

  /* ---------------- Payment Element ---------------- */
  function PaymentElement(elements, options) {
    this._elements = elements;
    this._options = options || {};
    this._handlers = {};
    this._root = null;
    this._fields = null;
    this._wallet = null;       // the wallet chosen ("apple_pay" | "google_pay"), null: the card form
  }

  PaymentElement.prototype.on = function (event, handler) {
    (this._handlers[event] = this._handlers[event] || []).push(handler);
    return this;
  };
  PaymentElement.prototype.off = function (event, handler) {
    var list = this._handlers[event] || [];
    this._handlers[event] = handler ? list.filter(function (h) { return h !== handler; }) : [];
    return this;
  };
  PaymentElement.prototype._emit = function (event, payload) {
    (this._handlers[event] || []).forEach(function (h) {
      try { h(payload); } catch (e) { setTimeout(function () { throw e; }); }
    });
  };

  PaymentElement.prototype.mount = function (target) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    if (!host) throw IntegrationError("The selector you specified (" + target + ") applies to no DOM elements that are currently on the page.");
    if (this._root) this.unmount();
    injectStyles(this._elements._appearance);
    var n = ++uid;
    var root = document.createElement("div");
    root.className = "sbx-pe";
    root.setAttribute("data-sandbox-element", "payment");
    root.innerHTML =
      '<div class="sbx-wallets" role="group" aria-label="Pay with a wallet" hidden></div>' +
      '<div class="sbx-wallet-note" hidden><p></p>' +
      '<button type="button" class="sbx-use-card">Pay by card instead</button></div>' +
      '<div class="sbx-card">' +
      '<label for="sbx-number-' + n + '">Card number</label>' +
      '<input id="sbx-number-' + n + '" name="cardnumber" autocomplete="cc-number" inputmode="numeric" placeholder="1234 1234 1234 1234" aria-invalid="false">' +
      '<div class="sbx-row">' +
      '<div><label for="sbx-exp-' + n + '">Expiration (MM / YY)</label>' +
      '<input id="sbx-exp-' + n + '" name="exp-date" autocomplete="cc-exp" inputmode="numeric" placeholder="MM / YY" aria-invalid="false"></div>' +
      '<div><label for="sbx-cvc-' + n + '">CVC</label>' +
      '<input id="sbx-cvc-' + n + '" name="cvc" autocomplete="cc-csc" inputmode="numeric" placeholder="CVC" aria-invalid="false"></div>' +
      "</div>" +
      '<label for="sbx-zip-' + n + '">ZIP</label>' +
      '<input id="sbx-zip-' + n + '" name="postal" autocomplete="postal-code" placeholder="12345" aria-invalid="false">' +
      "</div>" +
      '<div class="sbx-error" role="alert" aria-live="polite"></div>';
    host.appendChild(root);
    this._root = root;
    this._fields = {
      number: root.querySelector("#sbx-number-" + n),
      exp: root.querySelector("#sbx-exp-" + n),
      cvc: root.querySelector("#sbx-cvc-" + n),
      zip: root.querySelector("#sbx-zip-" + n),
    };
    var self = this;
    var f = this._fields;
    f.number.addEventListener("input", function () {
      var digits = f.number.value.replace(/\D/g, "").slice(0, 19);
      f.number.value = digits.replace(/(\d{4})(?=\d)/g, "$1 ");
    });
    f.exp.addEventListener("input", function (ev) {
      var digits = f.exp.value.replace(/\D/g, "").slice(0, 4);
      if (ev.inputType && ev.inputType.indexOf("delete") === 0) {
        f.exp.value = digits.length > 2 ? digits.slice(0, 2) + " / " + digits.slice(2) : digits;
        return;
      }
      if (digits.length === 1 && digits > "1") digits = "0" + digits;
      f.exp.value = digits.length >= 2 ? digits.slice(0, 2) + " / " + digits.slice(2) : digits;
    });
    f.cvc.addEventListener("input", function () {
      f.cvc.value = f.cvc.value.replace(/\D/g, "").slice(0, 4);
    });
    Object.keys(f).forEach(function (k) {
      f[k].addEventListener("input", function () {
        self._setError(null);
        self._emit("change", self._changeEvent());
      });
      f[k].addEventListener("focus", function () { self._emit("focus", { elementType: "payment" }); });
      f[k].addEventListener("blur", function () { self._emit("blur", { elementType: "payment" }); });
    });
    root.querySelector(".sbx-use-card").addEventListener("click", function () {
      self._chooseWallet(null);
      self._fields.number.focus();
    });
    var ready = function () { self._emit("ready", { elementType: "payment" }); };
    var wallets = this._walletsAllowed();
    if (!wallets.length || !this._elements._clientSecret) { setTimeout(ready, 0); return this; }
    // Wallets show only for an intent with automatic_payment_methods enabled (the device supports them).
    var kind = /^seti_/.test(this._elements._clientSecret) ? "setupIntent" : "paymentIntent";
    this._elements._stripe._retrieve(kind, this._elements._clientSecret).then(function (r) {
      var intent = r && r[kind];
      if (root === self._root && intent && intent.automatic_payment_methods && intent.automatic_payment_methods.enabled) {
        self._renderWallets(wallets);
      }
      ready();
    }, ready);
    return this;
  };

  PaymentElement.prototype._walletsAllowed = function () {
    var opt = this._options.wallets || {};
    return supportedWallets().filter(function (w) {
      return opt[w === "apple_pay" ? "applePay" : "googlePay"] !== "never";
    });
  };

  PaymentElement.prototype._renderWallets = function (wallets) {
    var self = this;
    var bar = this._root.querySelector(".sbx-wallets");
    bar.innerHTML = "";
    wallets.forEach(function (w) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sbx-wallet";
      b.setAttribute("data-wallet", w);
      b.setAttribute("aria-pressed", "false");
      b.textContent = WALLETS[w];
      b.addEventListener("click", function () { self._chooseWallet(w); });
      bar.appendChild(b);
    });
    bar.hidden = false;
  };

  // Choose a wallet (or null: back to the card form).  The page's own pay button then confirms.
  PaymentElement.prototype._chooseWallet = function (wallet) {
    if (!this._root) return;
    this._wallet = wallet;
    this._root.querySelectorAll(".sbx-wallet").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-wallet") === wallet ? "true" : "false");
    });
    this._root.querySelector(".sbx-card").hidden = !!wallet;
    var note = this._root.querySelector(".sbx-wallet-note");
    note.hidden = !wallet;
    note.querySelector("p").textContent = wallet
      ? WALLETS[wallet] + " selected. Press the pay button to finish in " + WALLETS[wallet] + "." : "";
    this._setError(null);
    this._emit("change", this._changeEvent());
  };

  PaymentElement.prototype.unmount = function () {
    if (this._root && this._root.parentNode) this._root.parentNode.removeChild(this._root);
    this._root = null;
    this._fields = null;
  };
  PaymentElement.prototype.destroy = function () { this.unmount(); this._handlers = {}; };
  PaymentElement.prototype.focus = function () {
    if (!this._fields) return;
    var chosen = this._wallet && this._root.querySelector('.sbx-wallet[aria-pressed="true"]');
    (chosen || this._fields.number).focus();
  };
  PaymentElement.prototype.blur = function () { if (document.activeElement) document.activeElement.blur(); };
  PaymentElement.prototype.clear = function () {
    if (!this._fields) return;
    var f = this._fields;
    Object.keys(f).forEach(function (k) { f[k].value = ""; });
    this._emit("change", this._changeEvent());
  };
  PaymentElement.prototype.update = function (opts) { Object.assign(this._options, opts || {}); };
  PaymentElement.prototype.collapse = function () {};

  PaymentElement.prototype._values = function () {
    var f = this._fields;
    var exp = f.exp.value.replace(/\D/g, "");
    return {
      number: f.number.value.replace(/\D/g, ""),
      expMonth: exp.slice(0, 2),
      expYear: exp.slice(2, 4),
      cvc: f.cvc.value.replace(/\D/g, ""),
      zip: f.zip.value.trim(),
    };
  };

  PaymentElement.prototype._validate = function () {
    if (!this._fields) return { type: "validation_error", code: "incomplete", message: "The payment element is not mounted." };
    if (this._wallet) return null;      // the wallet sheet supplies the card
    var v = this._values();
    var f = this._fields;
    function err(code, message, field) {
      return { type: "validation_error", code: code, message: message, _field: field };
    }
    if (v.number.length < 12) return err("incomplete_number", "Your card number is incomplete.", f.number);
    if (!luhn(v.number)) return err("invalid_number", "Your card number is invalid.", f.number);
    if (v.expMonth.length < 2 || v.expYear.length < 2) return err("incomplete_expiry", "Your card's expiration date is incomplete.", f.exp);
    var month = parseInt(v.expMonth, 10);
    var year = 2000 + parseInt(v.expYear, 10);
    if (month < 1 || month > 12) return err("invalid_expiry_month", "Your card's expiration date is invalid.", f.exp);
    var now = new Date();
    if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
      return err("invalid_expiry_year_past", "Your card's expiration year is in the past.", f.exp);
    }
    var cvcLen = /^3[47]/.test(v.number) ? 4 : 3;
    if (v.cvc.length < cvcLen) return err("incomplete_cvc", "Your card's security code is incomplete.", f.cvc);
    if (v.zip.length < 3) return err("incomplete_zip", "Your postal code is incomplete.", f.zip);
    return null;
  };

  PaymentElement.prototype._changeEvent = function () {
    var v = this._values();
    var empty = !v.number && !v.expMonth && !v.cvc && !v.zip;
    if (this._wallet) return { elementType: "payment", empty: false, complete: true, collapsed: false, value: { type: this._wallet } };
    return { elementType: "payment", empty: empty, complete: this._validate() === null, collapsed: false, value: { type: "card" } };
  };

  PaymentElement.prototype._setError = function (error) {
    if (!this._root) return;
    var f = this._fields;
    Object.keys(f).forEach(function (k) { f[k].setAttribute("aria-invalid", "false"); });
    this._root.querySelector(".sbx-error").textContent = error ? error.message : "";
    if (error && error._field) error._field.setAttribute("aria-invalid", "true");
  };

  /* ---------------- Elements group ---------------- */
  function Elements(stripe, options) {
    options = options || {};
    this._stripe = stripe;
    this._clientSecret = options.clientSecret || null;
    this._appearance = options.appearance || null;
    this._options = options;
    this._payment = null;
  }
  Elements.prototype.create = function (type, options) {
    if (type !== "payment") throw IntegrationError("The Stripe sandbox only implements the 'payment' element, not '" + type + "'.");
    if (this._payment) throw IntegrationError("Can only create one Element of type payment.");
    this._payment = new PaymentElement(this, options);
    return this._payment;
  };
  Elements.prototype.getElement = function (type) { return type === "payment" ? this._payment : null; };
  Elements.prototype.update = function (options) {
    Object.assign(this._options, options || {});
    if (options && options.appearance) { this._appearance = options.appearance; injectStyles(this._appearance); }
  };
  Elements.prototype.fetchUpdates = function () { return Promise.resolve({}); };
  Elements.prototype.submit = function () {
    var el = this._payment;
    if (!el) return Promise.resolve({ error: { type: "validation_error", code: "no_element", message: "No payment element was created." } });
    var err = el._validate();
    el._setError(err);
    if (err) {
      var out = { type: err.type, code: err.code, message: err.message };
      return Promise.resolve({ error: out });
    }
    return Promise.resolve({});
  };

  /* ---------------- Stripe ---------------- */
  function StripeSandbox(key, options) {
    if (!(this instanceof StripeSandbox)) return new StripeSandbox(key, options);
    if (typeof key !== "string" || key.indexOf("pk_") !== 0) {
      throw IntegrationError("Invalid value for Stripe(): apiKey should be a publishable key (pk_...).");
    }
    this._key = key;
    this._options = options || {};
  }

  StripeSandbox.prototype._api = function (method, path, params) {
    var body = encode(Object.assign({ key: this._key }, params || {})).join("&");
    var url = API + path;
    var init = { method: method, headers: { "Content-Type": "application/x-www-form-urlencoded" } };
    if (method === "GET") url += "?" + body;
    else init.body = body;
    return fetch(url, init).then(
      function (resp) {
        return resp.json().then(function (json) { return { status: resp.status, body: json }; });
      },
      function () { return { status: 0, body: connectionError() }; }
    );
  };

  StripeSandbox.prototype.elements = function (options) { return new Elements(this, options); };

  StripeSandbox.prototype._retrieve = function (kind, clientSecret) {
    var id = intentIdFromSecret(clientSecret);
    var path = kind === "setupIntent" ? "/v1/setup_intents/" : "/v1/payment_intents/";
    return this._api("GET", path + id, { client_secret: clientSecret }).then(function (r) {
      if (r.status !== 200) return { error: r.body.error };
      var out = {};
      out[kind] = r.body;
      return out;
    });
  };
  StripeSandbox.prototype.retrievePaymentIntent = function (clientSecret) { return this._retrieve("paymentIntent", clientSecret); };
  StripeSandbox.prototype.retrieveSetupIntent = function (clientSecret) { return this._retrieve("setupIntent", clientSecret); };

  // A modal dialog keeps the keyboard inside it (Tab / Shift+Tab cycle through its controls, focus
  // that lands outside comes back) until it closes; then focus returns where it was.  Returns release().
  function trapFocus(backdrop) {
    var before = document.activeElement;
    function items() {
      return Array.prototype.filter.call(backdrop.querySelectorAll("button,select,input,a[href],[tabindex]"),
        function (el) { return !el.disabled && el.tabIndex >= 0 && el.getClientRects().length; });
    }
    function onKey(ev) {
      if (ev.key !== "Tab") return;
      var list = items(), active = document.activeElement;
      if (!list.length) { ev.preventDefault(); return; }
      var first = list[0], last = list[list.length - 1];
      if (ev.shiftKey && (active === first || !backdrop.contains(active))) { ev.preventDefault(); last.focus(); }
      else if (!ev.shiftKey && (active === last || !backdrop.contains(active))) { ev.preventDefault(); first.focus(); }
    }
    function onFocus(ev) {
      if (!backdrop.contains(ev.target)) { var list = items(); if (list.length) list[0].focus(); }
    }
    document.addEventListener("keydown", onKey, true);
    document.addEventListener("focusin", onFocus, true);
    return function release() {
      document.removeEventListener("keydown", onKey, true);
      document.removeEventListener("focusin", onFocus, true);
      if (before && before !== document.body && document.contains(before) && before.focus) before.focus();
    };
  }

  StripeSandbox.prototype._challenge = function (intent, clientSecret) {
    var self = this;
    return new Promise(function (resolve) {
      injectStyles(null);
      var backdrop = document.createElement("div");
      backdrop.className = "sbx-3ds-backdrop";
      var amount = intent.amount != null ? (intent.amount / 100).toFixed(2) + " " + String(intent.currency || "").toUpperCase() : "";
      backdrop.innerHTML =
        '<div class="sbx-3ds" role="dialog" aria-modal="true" aria-labelledby="sbx-3ds-title">' +
        '<h2 id="sbx-3ds-title">3D Secure 2 Test Page</h2>' +
        "<p>This is a test authentication page of the Stripe sandbox. " +
        (amount ? "Amount: " + amount + ". " : "") +
        "Complete or fail the authentication to see how your integration behaves.</p>" +
        '<button type="button" class="sbx-complete">Complete authentication</button>' +
        '<button type="button" class="sbx-fail">Fail authentication</button>' +
        "</div>";
      document.body.appendChild(backdrop);
      var release = trapFocus(backdrop);
      var done = false;
      function finish(outcome) {
        if (done) return;
        done = true;
        backdrop.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        self._api("POST", "/v1/3ds2/challenge_complete", { intent: intent.id, client_secret: clientSecret, outcome: outcome })
          .then(function (r) {
            if (backdrop.parentNode) backdrop.parentNode.removeChild(backdrop);
            release();
            resolve(r);
          });
      }
      backdrop.querySelector(".sbx-complete").addEventListener("click", function () { finish("succeeded"); });
      backdrop.querySelector(".sbx-fail").addEventListener("click", function () { finish("failed"); });
      backdrop.querySelector(".sbx-complete").focus();
    });
  };

  // The sandbox wallet sheet: pick a test card "in the wallet".  Resolves with the card, or null (canceled).
  StripeSandbox.prototype._walletSheet = function (wallet, intent) {
    return new Promise(function (resolve) {
      injectStyles(null);
      var n = ++uid;
      var name = WALLETS[wallet];
      var backdrop = document.createElement("div");
      backdrop.className = "sbx-3ds-backdrop";
      var amount = intent && intent.amount != null
        ? (intent.amount / 100).toFixed(2) + " " + String(intent.currency || "").toUpperCase() : "";
      backdrop.innerHTML =
        '<div class="sbx-3ds sbx-wallet-sheet" role="dialog" aria-modal="true" aria-labelledby="sbx-ws-title-' + n + '">' +
        '<h2 id="sbx-ws-title-' + n + '"></h2>' +
        "<p>Sandbox wallet: no real wallet is used. Choose the test card to pay with" +
        (amount ? " (" + amount + ")" : "") + ".</p>" +
        '<label for="sbx-ws-card-' + n + '">Card in wallet</label>' +
        '<select id="sbx-ws-card-' + n + '"></select>' +
        '<button type="button" class="sbx-complete"></button>' +
        '<button type="button" class="sbx-fail">Cancel</button>' +
        "</div>";
      backdrop.querySelector("h2").textContent = name;
      backdrop.querySelector(".sbx-complete").textContent = "Pay with " + name;
      var select = backdrop.querySelector("select");
      WALLET_CARDS.forEach(function (c) {
        var o = document.createElement("option");
        o.value = c[0];
        o.textContent = c[1];
        select.appendChild(o);
      });
      document.body.appendChild(backdrop);
      var release = trapFocus(backdrop);
      function finish(card) {
        if (backdrop.parentNode) backdrop.parentNode.removeChild(backdrop);
        release();
        resolve(card);
      }
      backdrop.querySelector(".sbx-complete").addEventListener("click", function () {
        finish({ number: select.value, exp_month: "12", exp_year: String(new Date().getFullYear() + 3), wallet: wallet });
      });
      backdrop.querySelector(".sbx-fail").addEventListener("click", function () { finish(null); });
      backdrop.addEventListener("keydown", function (ev) { if (ev.key === "Escape") finish(null); });
      backdrop.querySelector(".sbx-complete").focus();
    });
  };

  // Stripe.js's paymentRequest(...).canMakePayment(): which wallets "the device" has ready (null: none).
  StripeSandbox.prototype.paymentRequest = function (options) {
    options = options || {};
    if (!options.country || !options.currency || !options.total) {
      throw IntegrationError("Missing value for paymentRequest(): country, currency and total are required.");
    }
    return {
      canMakePayment: function () {
        var w = supportedWallets();
        if (!w.length) return Promise.resolve(null);
        return Promise.resolve({ applePay: w.indexOf("apple_pay") !== -1, googlePay: w.indexOf("google_pay") !== -1, link: false });
      },
      on: function () { return this; },
      off: function () { return this; },
      update: function () {},
      show: function () { throw IntegrationError("The Stripe sandbox's paymentRequest only implements canMakePayment()."); },
    };
  };

  // After confirmation (and any challenge): Stripe.js's {paymentIntent} / {error} result.
  function outcome(kind, intent) {
    var errKey = kind === "setupIntent" ? "last_setup_error" : "last_payment_error";
    var objKey = kind === "setupIntent" ? "setup_intent" : "payment_intent";
    if (intent.status === "requires_payment_method" && intent[errKey]) {
      var error = Object.assign({}, intent[errKey]);
      error[objKey] = intent;
      return { error: error };
    }
    var out = {};
    out[kind] = intent;
    return out;
  }

  StripeSandbox.prototype._handleAction = function (kind, intent, clientSecret) {
    if (intent.status !== "requires_action") return Promise.resolve(outcome(kind, intent));
    return this._challenge(intent, clientSecret).then(function (r) {
      if (r.status !== 200) return { error: r.body.error };
      return outcome(kind, r.body);
    });
  };

  StripeSandbox.prototype.handleNextAction = function (options) {
    options = options || {};
    var cs = options.clientSecret;
    var kind = /^seti_/.test(cs || "") ? "setupIntent" : "paymentIntent";
    var self = this;
    return this._retrieve(kind, cs).then(function (r) {
      if (r.error) return r;
      return self._handleAction(kind, r[kind], cs);
    });
  };
  StripeSandbox.prototype.handleCardAction = function (cs) { return this.handleNextAction({ clientSecret: cs }); };

  StripeSandbox.prototype._confirm = function (kind, options) {
    options = options || {};
    var self = this;
    var elements = options.elements;
    var confirmParams = options.confirmParams || {};
    var redirect = options.redirect || "always";
    var cs = options.clientSecret || (elements && elements._clientSecret);
    if (!cs) return Promise.reject(IntegrationError("Missing clientSecret: pass it to stripe.elements() or to " + (kind === "setupIntent" ? "confirmSetup" : "confirmPayment") + "()."));
    if (redirect === "always" && !confirmParams.return_url) {
      return Promise.reject(IntegrationError("confirmParams.return_url is required when redirect is 'always'."));
    }
    var id = intentIdFromSecret(cs);
    var el = elements && elements._payment;
    if (!el || !el._fields) return Promise.reject(IntegrationError("A mounted payment element is required."));
    var verr = el._validate();
    el._setError(verr);
    if (verr) return Promise.resolve({ error: { type: verr.type, code: verr.code, message: verr.message } });
    var v = el._values();
    var pmd = confirmParams.payment_method_data || {};
    var billing = Object.assign({}, pmd.billing_details || {});
    var card;
    var wallet = el._wallet;
    if (wallet) {
      // The wallet sheet gives the card (no CVC, no postal code typed), tagged with the wallet.
      var shown = kind === "paymentIntent" ? this._retrieve(kind, cs) : Promise.resolve({});
      card = shown.then(function (r) { return self._walletSheet(wallet, r && r[kind]); });
    } else {
      billing.address = Object.assign({}, billing.address || {}, { postal_code: v.zip });
      card = Promise.resolve({ number: v.number, exp_month: v.expMonth, exp_year: v.expYear, cvc: v.cvc });
    }
    return card.then(function (c) {
      if (!c) {
        return { status: 0, canceled: true, body: { error: { type: "validation_error", code: "payment_canceled",
          message: WALLETS[wallet] + " was closed before paying. Nothing was charged." } } };
      }
      return self._api("POST", "/v1/payment_methods", { type: "card", card: c, billing_details: billing });
    }).then(function (r) {
      if (r.canceled) return { error: r.body.error };
      if (r.status !== 200) {
        el._setError({ message: r.body.error.message });
        return { error: r.body.error };
      }
      var params = { client_secret: cs, payment_method: r.body.id };
      if (confirmParams.return_url) params.return_url = confirmParams.return_url;
      if (confirmParams.receipt_email) params.receipt_email = confirmParams.receipt_email;
      var path = (kind === "setupIntent" ? "/v1/setup_intents/" : "/v1/payment_intents/") + id + "/confirm";
      return self._api("POST", path, params).then(function (c) {
        if (c.status !== 200) return { error: c.body.error };
        return self._handleAction(kind, c.body, cs);
      });
    }).then(function (result) {
      if (result.error || redirect !== "always") return result;
      var intent = result[kind];
      var prefix = kind === "setupIntent" ? "setup_intent" : "payment_intent";
      var status = intent.status === "processing" ? "processing" : "succeeded";
      var url = new URL(confirmParams.return_url, window.location.href);
      url.searchParams.set(prefix, intent.id);
      url.searchParams.set(prefix + "_client_secret", cs);
      url.searchParams.set("redirect_status", status);
      window.location.assign(url.toString());
      return new Promise(function () {});
    });
  };

  StripeSandbox.prototype.confirmPayment = function (options) { return this._confirm("paymentIntent", options); };
  StripeSandbox.prototype.confirmSetup = function (options) { return this._confirm("setupIntent", options); };

  StripeSandbox.version = 3;
  StripeSandbox.sandbox = true;
  window.Stripe = StripeSandbox;
})();
