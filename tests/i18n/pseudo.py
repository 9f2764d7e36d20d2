"""The untranslated-string detector (issue 17): pages rendered with a pseudo-translation.

While ``pseudo_translation(app)`` is on, every string that goes through the catalogue (``_()``,
``gettext``, ``ngettext``, ``lazy_gettext`` in Python and templates) comes out wrapped in
``⟦…⟧`` (its Spanish when there is one, else its English), and every date, time and amount the
``local`` and ``money`` filters format comes out wrapped in ``⟪…⟫``. ``untranslated(html, data)``
then lists the visible text of a page — text nodes and the placeholder / aria-label / title / alt
attributes and buttons' values — that is outside both: an English string typed into a template or a
view without ``_()``. What may stand outside them: the ``data`` strings (what the test seeded: names,
the clinic's details, visit types, codes...), numbers and codes, punctuation, URLs and email
addresses, and the text of elements marked ``lang="…"`` (a language's own name in the switch).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from html.parser import HTMLParser

MARK_OPEN, MARK_CLOSE = "\u27e6", "\u27e7"          # ⟦ ⟧ : came from the catalogue
DATA_OPEN, DATA_CLOSE = "\u27ea", "\u27eb"          # ⟪ ⟫ : a date, time or amount the filters formatted

VISIBLE_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt", "aria-description", "data-busy-label")
SKIPPED_ELEMENTS = {"script", "style", "time"}     # <time>: a date or time (data), whatever made it
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class PseudoTranslations:
    """A Translations object whose every answer is wrapped in ⟦…⟧ (the real Spanish inside)."""

    def __init__(self, real):
        self.real = real

    @staticmethod
    def _wrap(text):
        return f"{MARK_OPEN}{text}{MARK_CLOSE}"

    def ugettext(self, string):
        return self._wrap(self.real.ugettext(string))

    gettext = ugettext

    def ungettext(self, singular, plural, n):
        return self._wrap(self.real.ungettext(singular, plural, n))

    ngettext = ungettext

    def upgettext(self, context, string):
        return self._wrap(self.real.upgettext(context, string))

    pgettext = upgettext

    def unpgettext(self, context, singular, plural, n):
        return self._wrap(self.real.unpgettext(context, singular, plural, n))

    npgettext = unpgettext

    def __getattr__(self, name):
        return getattr(self.real, name)


@contextmanager
def pseudo_translation(app):
    """Every catalogue string wrapped in ⟦…⟧ and every formatted date/amount in ⟪…⟫, for the block."""
    import flask_babel

    original = flask_babel.Domain.get_translations

    def get_translations(self):
        return PseudoTranslations(original(self))

    # The filters' formatting functions, not the Jinja filters themselves: a template imported by
    # another (a macro's module) is cached by Jinja with the filters it pulled when first rendered,
    # so swapping ``app.jinja_env.filters`` would miss (or, worse, outlive) those renders.
    from app.blueprints import filters

    saved = {name: getattr(filters, name) for name in ("format_local", "format_money")}

    def data(fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            return f"{DATA_OPEN}{out}{DATA_CLOSE}" if out else out
        return wrapped

    flask_babel.Domain.get_translations = get_translations
    for name, fn in saved.items():
        setattr(filters, name, data(fn))
    try:
        yield
    finally:
        flask_babel.Domain.get_translations = original
        for name, fn in saved.items():
            setattr(filters, name, fn)


class _Texts(HTMLParser):
    """A page's visible text: ``stream`` (the text nodes in order, as (where, text)) and
    ``attributes`` (placeholder, aria-label, title, alt, buttons' values: each one whole)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []      # (tag, skipped)
        self.stream: list[tuple[str, str]] = []
        self.attributes: list[tuple[str, str]] = []

    def _skipping(self) -> bool:
        return any(skipped for _, skipped in self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        # hidden or aria-hidden text still shows (later, or to sighted users): it is checked too
        skipped = tag in SKIPPED_ELEMENTS or ("lang" in attrs and tag != "html")
        if not self._skipping() and not skipped:
            for name in VISIBLE_ATTRIBUTES:
                if attrs.get(name):
                    self.attributes.append((f"<{tag} {name}>", attrs[name]))
            if tag == "input" and attrs.get("type") in ("submit", "button", "reset") and attrs.get("value"):
                self.attributes.append((f"<{tag} value>", attrs["value"]))
        if tag not in VOID:
            self.stack.append((tag, skipped))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data):
        if data.strip() and not self._skipping():
            where = self.stack[-1][0] if self.stack else "document"
            self.stream.append((f"<{where}>", data))


def _parse(html: str) -> _Texts:
    parser = _Texts()
    parser.feed(html)
    parser.close()
    return parser


def visible_texts(html: str) -> list[tuple[str, str]]:
    parsed = _parse(html)
    return parsed.stream + parsed.attributes


SEP = "\x00"                                        # between text nodes (a marked string may span several)
_MARKED = re.compile(f"{MARK_OPEN}[^{MARK_OPEN}{MARK_CLOSE}]*{MARK_CLOSE}")
_DATA = re.compile(f"{DATA_OPEN}[^{DATA_OPEN}{DATA_CLOSE}]*{DATA_CLOSE}")
_URL_OR_EMAIL = re.compile(r"(?:https?://|/)[^\s]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b(?:[\w-]+\.)+[a-z]{2,}(?:/[^\s]*)?")
_WITH_DIGIT = re.compile(r"\b\w*\d\w*\b")           # numbers, ids, codes (99213, G0463, #12, 4242)


def _unmark(text: str) -> str:
    """Take out the catalogue's strings (innermost first: one may hold another, across text nodes:
    the node separators inside go too) and the formatted dates and amounts."""
    previous = None
    while previous != text:
        previous = text
        text = _MARKED.sub(lambda m: SEP * m.group(0).count(SEP) + " ", text)
        text = _DATA.sub(lambda m: SEP * m.group(0).count(SEP) + " ", text)
    return text


def leftover(text: str, data: list[str]) -> str:
    """What remains of ``text`` (markers already taken out) once the seeded data, URLs, numbers and
    codes are taken out too: "" unless a letter is left."""
    for value in data:                           # longest first (the caller sorts them)
        if value and value.lower() in text.lower():
            text = re.sub(re.escape(value), " ", text, flags=re.I)
    text = _URL_OR_EMAIL.sub(" ", text)
    text = _WITH_DIGIT.sub(" ", text)
    return text if re.search(r"[^\W\d_]", text) else ""


def untranslated(html: str, data=()) -> list[str]:
    """The visible text of a pseudo-translated page that did not come from the catalogue."""
    ordered = sorted({str(d).strip() for d in data if d and str(d).strip()}, key=len, reverse=True)
    parsed = _parse(html)
    found = []
    # The text nodes as one stream, so that a string marked around inline markup (a <strong>, a
    # link) is taken out whole; the node boundaries survive as SEP, to say where what is left was.
    rest_stream = _unmark(SEP.join(text for _, text in parsed.stream)).split(SEP) if parsed.stream else []
    assert len(rest_stream) == len(parsed.stream)
    for (where, text), rest in zip(parsed.stream, rest_stream):
        rest = leftover(rest, ordered)
        if rest:
            found.append(f"{where} {' '.join(text.split())!r} (unmarked: {' '.join(rest.split())!r})")
    for where, text in parsed.attributes:
        rest = leftover(_unmark(text), ordered)
        if rest:
            found.append(f"{where} {' '.join(text.split())!r} (unmarked: {' '.join(rest.split())!r})")
    return found
