"""Compressed responses (Flask-Compress: brotli, then gzip) and when we compress.

- Static and vendor files (CSS, JS, SVG): always. They hold no secret. A fingerprinted hit
  (``?v=`` the content's hash, kept a year: app/blueprints/assets/) is compressed once per
  process and algorithm and then served from memory.
- Pages and JSON: only for a request the browser itself marks as coming from our own pages or
  from the person (``Sec-Fetch-Site: same-origin`` or ``none``: a typed address, a bookmark).
  Pages carry the CSRF token and PHI and some reflect input, the three parts of BREACH; what
  BREACH needs besides is to make the victim's browser send many requests from the attacker's
  page, and those are marked ``cross-site`` (or ``same-site``). A request without the header (an
  old browser, a script) gets the page uncompressed too. docs/architecture.md, Compression.

Only 200 responses are compressed: a 206 (a range of a file) or a 304 is passed as it is.
Compression runs after every other ``after_request`` function (it is registered first).
"""
from __future__ import annotations

from collections import OrderedDict

from flask import Flask, request

from app.extensions import compress, compress_static

MIMETYPES = [
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "image/svg+xml",
    "text/plain",
    "text/csv",
]
ALGORITHMS = ["br", "gzip"]
# Sec-Fetch-Site values a BREACH attacker's page cannot make the browser send.
FIRST_PARTY = frozenset({"same-origin", "none"})


class BoundedCache:
    """Compressed fingerprinted files: a small LRU (a stale ``v`` ages out)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.data: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


def init_app(app: Flask) -> None:
    app.config.update(
        COMPRESS_REGISTER=False,                 # our after_request below decides
        COMPRESS_MIMETYPES=MIMETYPES,
        COMPRESS_ALGORITHM=ALGORITHMS,
        COMPRESS_ALGORITHM_STREAMING=ALGORITHMS,
        COMPRESS_LEVEL=6,                        # gzip
        COMPRESS_BR_LEVEL=5,
        COMPRESS_MIN_SIZE=500,
    )
    compress.init_app(app)
    compress_static.init_app(app)
    compress_static.cache = BoundedCache()
    compress_static.cache_key = lambda req: req.full_path
    app.after_request(compress_response)


def compress_response(response):
    from app import SESSIONLESS
    from app.blueprints.assets import IMMUTABLE, cache_control

    if request.blueprint in SESSIONLESS:         # server to server: never compressed, no Vary
        return response

    policy = cache_control()
    if policy is None:                           # a page or JSON
        _vary(response, "Accept-Encoding", "Sec-Fetch-Site")
        if response.status_code == 200 and request.headers.get("Sec-Fetch-Site") in FIRST_PARTY:
            return compress.after_request(response)
        return response
    _vary(response, "Accept-Encoding")           # a static or vendor file
    if response.status_code != 200:
        return response
    if response.is_streamed and response.mimetype in compress.compress_mimetypes_set:
        # send_file streams the file; read it (small: CSS, JS) so gzip is on offer too.
        response.direct_passthrough = False
        response.make_sequence()
    engine = compress_static if policy == IMMUTABLE else compress
    return engine.after_request(response)


def _vary(response, *names: str) -> None:
    """Whether a response is compressed depends on these request headers; say so to caches."""
    present = {v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()}
    for name in names:
        if name.lower() not in present:
            response.vary.add(name)
