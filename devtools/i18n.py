"""The Spanish catalogue's tool (dev only): extract the marked strings, list what lacks Spanish, add Spanish.

    python -m devtools.i18n extract          # app/**.py and app/templates -> app/translations/es/.../messages.po
    python -m devtools.i18n missing          # the msgids with no Spanish yet (after extract)
    python -m devtools.i18n add FILE.json    # {"English msgid": "Spanish", "%(n)s item": ["%(n)s artículo", "%(n)s artículos"]}

The .po file is the catalogue kept in the repository (app/i18n.py compiles it at start-up). Every write
takes a lock, so several people (or processes) can add at once; ``extract`` keeps every translation
whose msgid is still used and drops the rest.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import re
import sys
import tempfile
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po
from jinja2 import TemplateSyntaxError

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
PO = APP / "translations" / "es" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None,
            "lazy_ngettext": (1, 2), "N_": None, "pgettext": ((1, "c"), 2)}
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2"), ("templates/**.txt", "jinja2")]
# silent=false: a template with a syntax error stops the extraction (instead of silently losing its strings)
OPTIONS = {"templates/**.html": {"extensions": "jinja2.ext.do", "silent": "false"},
           "templates/**.txt": {"extensions": "jinja2.ext.do", "silent": "false"}}


@contextmanager
def locked():
    PO.parent.mkdir(parents=True, exist_ok=True)
    lock_dir = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())   # one lock, whatever TMPDIR says
    lock_path = lock_dir / f"clinic-i18n-{hashlib.sha1(str(PO).encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read() -> Catalog:
    with PO.open("rb") as handle:
        return read_po(handle, locale="es")


def write(catalog: Catalog) -> None:
    buffer = BytesIO()
    write_po(buffer, catalog, width=100, sort_output=True, omit_header=False, include_lineno=False)
    tmp = PO.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(PO)


class ExtractError(Exception):
    """A source file could not be read (e.g. someone is half-way through editing it): nothing is written."""


def _wanted_directory(path) -> bool:
    """Every directory but caches and dot-directories: Babel's default also skips names starting with
    "_", which would leave out app/templates/_partials (shared patient-facing pieces)."""
    name = Path(path).name
    return not name.startswith(".") and name != "__pycache__"


def template() -> Catalog:
    """Every marked string in the app's code and templates."""
    found = Catalog(locale="es")
    current = {"file": None}

    def seen(filename, method, options):
        current["file"] = filename

    try:
        for filename, lineno, message, comments, context in extract_from_dir(
                str(APP), method_map=METHODS, options_map=OPTIONS, keywords=KEYWORDS, callback=seen,
                strip_comment_tags=True, directory_filter=_wanted_directory):
            found.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    except (SyntaxError, ValueError, LookupError, TemplateSyntaxError) as problem:   # Python / Jinja errors
        raise ExtractError(f"app/{current['file']}: {type(problem).__name__}: {problem} "
                           "(fix it, or wait for whoever is editing it, then run extract again)") from problem
    return found


def extract() -> list[str]:
    with locked():
        catalog = read()
        catalog.update(template(), no_fuzzy_matching=True)
        catalog.obsolete.clear()
        write(catalog)
    return missing()


def missing() -> list[str]:
    catalog = read()
    out = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
        if message.fuzzy or not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def check_entry(msgid: str, msgstr) -> str | None:
    """Why a translation would break at run time (a placeholder the English does not have), or None."""
    strings = msgstr if isinstance(msgstr, list) else [msgstr]
    known = set(PLACEHOLDER.findall(msgid))
    for string in strings:
        if not isinstance(string, str) or not string:
            return "empty translation"
        extra = set(PLACEHOLDER.findall(string)) - known
        if extra and not (isinstance(msgstr, list) and extra <= {"num"}):
            return f"placeholders not in the English: {sorted(extra)}"
    return None


def add(path: str) -> int:
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    refused = {msgid: why for msgid, msgstr in entries.items() if (why := check_entry(msgid, msgstr))}
    for msgid, why in refused.items():
        print(f"refused {msgid!r}: {why}", file=sys.stderr)
    entries = {k: v for k, v in entries.items() if k not in refused}
    with locked():
        catalog = read()
        unknown = [msgid for msgid in entries if catalog.get(msgid) is None and not any(
            isinstance(m.id, tuple) and m.id[0] == msgid for m in catalog)]
        for msgid in unknown:
            print(f"note: {msgid!r} is not (yet) a marked string: run extract first, or check the spelling",
                  file=sys.stderr)
        for msgid, msgstr in entries.items():
            existing = catalog.get(msgid) or next(
                (m for m in catalog if isinstance(m.id, tuple) and m.id[0] == msgid), None)
            if isinstance(msgstr, list):
                ident = existing.id if existing is not None and isinstance(existing.id, tuple) else (msgid, msgid)
                string = tuple(msgstr)
            else:
                ident, string = msgid, msgstr
            if existing is not None and existing.id == ident:
                # Catalog.add keeps an existing message's string: set it on the message itself.
                existing.string = string
            else:
                catalog.add(ident, string, locations=existing.locations if existing else ())
            message = catalog.get(ident if isinstance(ident, str) else ident[0])
            if message is not None:
                message.flags.discard("fuzzy")
        write(catalog)
    return len(entries)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"extract", "missing", "add"}:
        print(__doc__)
        return 2
    if argv[0] == "add":
        for path in argv[1:]:
            print(f"{add(path)} entries from {path}")
        return 0
    try:
        left = extract() if argv[0] == "extract" else missing()
    except ExtractError as problem:
        print(f"extract: nothing written: {problem}", file=sys.stderr)
        return 1
    print("\n".join(json.dumps(m, ensure_ascii=False) for m in left))
    print(f"-- {len(left)} without Spanish", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
