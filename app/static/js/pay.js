// The post-visit pay page: a saved card in one tap (the server confirms on-session; 3-D Secure is
// handed back here) or a new card in the Payment Element; payment_page.js does the work. The page
// never decides the outcome: after Stripe.js answers, the server re-reads the PaymentIntent and says
// where to go (back to this page, paid or canceled).
(function () {
  var form = document.getElementById("payment-form");
  if (!form || typeof Stripe === "undefined") return;
  var d = form.dataset;
  PaymentPage.start(form, {
    button: "pay-button", message: "payment-message",
    confirm: "confirmPayment",
    savedUrl: d.paySavedUrl,
    savedBody: function (chosen) { return "payment_method=" + encodeURIComponent(chosen.dataset.paymentMethod); },
    redirectOn: ["confirmed", "canceled"], endOn: [],
    text: {
      pending: "Your payment went through and we are still recording it. Please don't pay again: "
               + "reload this page in a minute to see it.",
      declined: "Your card was declined. Please try another card.",
      unreachable: "We could not reach the clinic just now. You have not been charged twice: reload the page "
                   + "to see where your payment stands."
    }
  });
})();
