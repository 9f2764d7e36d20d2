"""The Spanish catalogue is complete and sound (issue 17).

The marked strings are extracted from the source at test time (the same extraction as
``python -m devtools.i18n extract``), so a string marked with ``_()`` but never translated fails
here even if nobody ran the tool; so does a fuzzy entry, a translation whose placeholders the
English does not have (it would raise at run time), and a catalogue that no longer compiles.
"""
from __future__ import annotations

from io import BytesIO

from babel.messages.mofile import write_mo

from devtools import i18n as tool


def _strings(message):
    return list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]


def _msgid(message):
    return message.id if isinstance(message.id, str) else message.id[0]


def test_every_marked_string_has_spanish():
    missing, fuzzy = without_spanish(tool.template(), tool.read())
    problems = ([f"{len(missing)} marked string(s) without Spanish (python -m devtools.i18n extract, then add):"]
                + missing[:400] if missing else []) + (["fuzzy:"] + fuzzy if fuzzy else [])
    assert not problems, "\n  ".join(problems)


def test_a_newly_marked_string_without_spanish_is_reported():
    from babel.messages.catalog import Catalog

    marked = Catalog(locale="es")
    marked.add("Book a visit", locations=[("templates/x.html", 1)])
    marked.add("Pick a time", locations=[("templates/x.html", 2)])
    catalogue = Catalog(locale="es")
    catalogue.add("Book a visit", "Reservar una cita")
    missing, fuzzy = without_spanish(marked, catalogue)
    assert len(missing) == 1 and "'Pick a time'" in missing[0] and "templates/x.html:2" in missing[0]
    catalogue.add("Pick a time", "Elija una hora", flags=["fuzzy"])
    assert without_spanish(marked, catalogue) == ([], ["'Pick a time'"])


def without_spanish(marked, catalogue):
    """(msgids marked in the source with no Spanish in the catalogue, fuzzy ones)."""
    missing, fuzzy = [], []
    for message in marked:
        if not message.id:
            continue
        found = catalogue.get(message.id, context=message.context)
        if found is None or not all(_strings(found)):
            where = ", ".join(sorted({f"{f}:{n}" for f, n in message.locations})[:2])
            missing.append(f"{_msgid(message)!r}  ({where})")
        elif found.fuzzy:
            fuzzy.append(repr(_msgid(message)))
    return missing, fuzzy


def test_translations_keep_the_placeholders():
    broken = []
    for message in tool.read():
        if not message.id or not all(_strings(message)):
            continue
        english = message.id if isinstance(message.id, str) else " ".join(message.id)
        strings = message.string if isinstance(message.string, (list, tuple)) else message.string
        why = tool.check_entry(english, list(strings) if isinstance(strings, tuple) else strings)
        if why:
            broken.append(f"{_msgid(message)!r}: {why}")
    assert broken == []


def test_the_catalogue_compiles():
    write_mo(BytesIO(), tool.read(), use_fuzzy=False)


def test_the_app_speaks_spanish_from_the_catalogue(app):
    from flask_babel import force_locale, gettext

    with app.app_context(), force_locale("es"):
        assert gettext("Language") == "Idioma"
        assert gettext("Questions: %(phone)s", phone="555") == "Preguntas: 555"
    with app.app_context(), force_locale("en"):
        assert gettext("Language") == "Language"


def test_the_tool_refuses_a_translation_that_would_break():
    assert tool.check_entry("Questions: %(phone)s", "Preguntas: %(tel)s")
    assert tool.check_entry("Questions: %(phone)s", "")
    assert tool.check_entry("Questions: %(phone)s", "Preguntas: %(phone)s") is None
    assert tool.check_entry("%(num)s visit", ["%(num)s consulta", "%(num)s consultas"]) is None
