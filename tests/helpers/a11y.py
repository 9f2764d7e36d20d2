"""axe-core in every browser context the suite opens (tests/conftest.py's ``browser`` fixture).

Every http(s) document (each page and each frame, the Stripe sandbox's pages too) gets axe-core and a
small runner as an init script (``context.add_init_script`` is not subject to the page's CSP). The
runner checks the document in the page itself, after its ``load`` event, after every htmx swap
(``htmx:afterSettle``) and whenever a dialog is added to <body> (the sandbox's 3-D Secure challenge),
and hands the serious and critical violations to Python through a binding as soon as a check ends,
so a later navigation loses nothing; ``page.goto`` first waits for the checks the page being
left has started (a test that goes straight on would otherwise leave before axe ends), and
``context.close`` first checks every open page's final state.
The autouse ``no_a11y_violations`` (tests/conftest.py) fails the test listing what was found.

Tags: WCAG 2.0 / 2.1, levels A and AA. Each document is checked on its own (``iframes: false``);
every frame gets its own runner.
"""
from __future__ import annotations

import json
from pathlib import Path

AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")

# What the suite found since the last ``take()``: {"url", "rule", "impact", "help", "targets", "why"}.
FOUND: list[dict] = []
CHECKS: list[tuple[str, str]] = []          # (url, why) of every check that ended, for the tests of this hook

_RUNNER = """
;(function () {
  if (window.__axeCheck || typeof axe === "undefined" || !/^https?:$/.test(location.protocol)) return;
  var OPTIONS = {iframes: false, resultTypes: ["violations"],
                 runOnly: {type: "tag", values: %(tags)s}};
  var BLOCKING = %(blocking)s;
  var tail = Promise.resolve(), queued = false;
  function summary(why, result, ms) {
    return {url: location.href, why: why, ms: ms, found: result.violations.filter(function (v) {
      return BLOCKING.indexOf(v.impact) !== -1;
    }).map(function (v) {
      return {rule: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 6).map(function (n) {
        return n.target.join(" ") + "  " + String(n.html || "").slice(0, 120);
      })};
    })};
  }
  function check(why) {          // one axe run at a time (axe refuses overlapping runs)
    var run = tail.then(function () {
      queued = false;
      var started = performance.now();
      return axe.run(document, OPTIONS).then(
        function (r) { return summary(why, r, Math.round(performance.now() - started)); },
        function (e) { return {url: location.href, why: why, error: String((e && e.message) || e)}; });
    });
    tail = run.catch(function () {});
    return run;
  }
  function auto(why) {           // coalesce: at most one check waiting behind the running one
    if (queued) return;
    queued = true;
    check(why).then(function (s) { try { window.__axeReport(JSON.stringify(s)); } catch (e) {} });
  }
  window.__axeCheck = check;
  // Resolves once the checks already started (the load check among them) have ended and reported.
  window.__axeSettle = function () { return tail.then(function () { return null; }); };
  if (document.readyState === "complete") auto("load");
  else window.addEventListener("load", function () { auto("load"); });
  document.addEventListener("htmx:afterSettle", function () { auto("htmx swap"); });
  function watchBody() {
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var added = records[i].addedNodes;
        for (var j = 0; j < added.length; j++) {
          var node = added[j];
          var DIALOG = "[role=dialog],[role=alertdialog],dialog";
          if (node.nodeType === 1 && (node.matches(DIALOG) || node.querySelector(DIALOG))) {
            auto("dialog");
            return;
          }
        }
      }
    }).observe(document.body, {childList: true});
  }
  if (document.body) watchBody(); else document.addEventListener("DOMContentLoaded", watchBody);
})();
"""


def _script() -> str:
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: run `npm ci` (package.json) to install axe-core")
    return AXE_JS.read_text() + _RUNNER % {"tags": json.dumps(TAGS), "blocking": json.dumps(list(BLOCKING))}


_SCRIPT: str | None = None


def record(summary: dict | None) -> None:
    if not summary:
        return
    url, why = summary.get("url", "?"), summary.get("why", "?")
    CHECKS.append((url, why))
    if summary.get("error"):
        FOUND.append({"url": url, "rule": "axe-error", "impact": "critical", "help": summary["error"],
                      "targets": [], "why": why})
    for v in summary.get("found", ()):
        FOUND.append({**v, "url": url, "why": why})


def final_check(context) -> None:
    """Check the final state of every page (and frame) still open in ``context``."""
    for page in list(context.pages):
        if page.is_closed():
            continue
        for frame in list(page.frames):
            try:
                summary = frame.evaluate("why => window.__axeCheck ? window.__axeCheck(why) : null", "final state")
            except Exception:           # a frame gone or navigating away: its load check already ran
                continue
            record(summary)


def watch(context):
    """Give ``context`` axe (see the module docstring); returns it."""
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = _script()
    context.expose_binding("__axeReport", lambda source, text: record(json.loads(text)))
    context.add_init_script(_SCRIPT)
    close = context.close

    def checked_close(*args, **kwargs):
        try:
            final_check(context)
        finally:
            return close(*args, **kwargs)

    context.close = checked_close
    new_page = context.new_page

    def settled_new_page(*args, **kwargs):
        page = new_page(*args, **kwargs)
        goto = page.goto

        def settled_goto(*goto_args, **goto_kwargs):
            settle(page)            # the page being left is checked before the test moves on
            return goto(*goto_args, **goto_kwargs)

        page.goto = settled_goto
        return page

    context.new_page = settled_new_page
    return context


def settle(page) -> None:
    """Wait for the checks the current document has started (its load check, a swap's) to report:
    a test that goes straight on to another address would otherwise leave before axe ends."""
    try:
        page.evaluate("() => window.__axeSettle ? window.__axeSettle() : null")
    except Exception:               # no document yet, or one navigating away: nothing to wait for
        return


def take() -> list[dict]:
    """What was found since the last call (and forget it)."""
    found, FOUND[:] = list(FOUND), []
    CHECKS.clear()
    return found


def report(found: list[dict]) -> str:
    seen, lines = set(), []
    for v in found:
        key = (v["url"].split("#")[0], v["rule"], tuple(v["targets"]))
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"{v['impact']}: {v['rule']} ({v['help']}) at {v['url']} [after {v['why']}]")
        lines.extend(f"      {t}" for t in v["targets"])
    return "\n  ".join(lines)
