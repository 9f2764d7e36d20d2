"""Production serving: gunicorn with the checked-in gunicorn.conf.py, compressed responses, JSON logs.

The server is started as production starts it (``gunicorn -c gunicorn.conf.py wsgi:app``, in
production mode, against this run's database and Redis), bound to a free loopback port.
"""
import gc
import gzip
import http.client
import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import brotli
import pytest

from tests.helpers.web import RUN_ID

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "gunicorn.conf.py"
CONTROLLED = ("APP_ENV", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "AUDIT_HMAC_KEY", "INSTANCE_PATH",
              "REDIS_NAMESPACE", "FIELD_KEYS", "FIELD_KEY_ACTIVE", "LOOKUP_HASH_KEY",
              "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
              "STRIPE_API_BASE", "STRIPE_JS_URL", "PORT", "WEB_CONCURRENCY", "WEB_THREADS", "WEB_TIMEOUT",
              "WEB_GRACEFUL_TIMEOUT", "WEB_KEEPALIVE", "WEB_MAX_REQUESTS", "GUNICORN_CMD_ARGS")
# The signed Flask-WTF token differs from one second to the next (itsdangerous signs a timestamp
# into it), so two copies of a page are compared with it masked.
CSRF_FIELD = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"')
SECRET_PATH_TOKEN = "s3cr3t-one-click-token"


def production_env(database_url, redis_url, instance, **changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(APP_ENV="production", DATABASE_URL=database_url, REDIS_URL=redis_url,
               SECRET_KEY="prod-secret-key", AUDIT_HMAC_KEY="prod-audit-key", INSTANCE_PATH=str(instance),
               REDIS_NAMESPACE=f"clinic-test-{RUN_ID}-serving",
               # a real Stripe test-mode key's shape, not the sandbox's (never called here)
               STRIPE_SECRET_KEY="sk_test_51ServingCheck", STRIPE_PUBLISHABLE_KEY="pk_test_51ServingCheck",
               STRIPE_WEBHOOK_SECRET="whsec_serving_check", PYTHONUNBUFFERED="1",
               FIELD_KEYS="prod1:cHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHA=",
               LOOKUP_HASH_KEY="prod-lookup-hash-key-0123456789abcdef")
    env.update({k: str(v) for k, v in changes.items()})
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, proc, port, out: Path, err: Path):
        self.proc, self.port, self.out, self.err = proc, port, out, err

    def request(self, method, path, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def log_lines(self) -> list[str]:
        return [line for path in (self.out, self.err) for line in path.read_text().splitlines() if line.strip()]


def start_server(folder: Path, database_url, redis_url, **env) -> Server:
    """gunicorn -c gunicorn.conf.py wsgi:app in production mode, answering on a loopback port."""
    port = free_port()
    out, err = folder / "stdout.log", folder / "stderr.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(CONFIG), "--bind", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT, stdout=stdout, stderr=stderr,
            env=production_env(database_url, redis_url, folder / "instance", **env))
    running = Server(proc, port, out, err)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited ({proc.returncode}): {err.read_text()[-3000:]}")
        try:
            if running.request("GET", "/login")[0] == 200:
                return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("gunicorn did not answer: " + err.read_text()[-3000:])
        time.sleep(0.3)


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="module")
def server(app, database_url, service_urls, tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("gunicorn"), database_url, service_urls["REDIS_URL"],
                           WEB_CONCURRENCY=2, WEB_THREADS=2)
    yield running
    stop(running)


def test_gunicorn_with_the_checked_in_config_serves_a_page(server):
    status, headers, body = server.request("GET", "/login")
    assert status == 200
    assert headers["server"].startswith("gunicorn")
    assert headers["cache-control"] == "no-store"
    assert b"csrf_token" in body
    deadline = time.monotonic() + 15        # the second worker may still be booting when the first answers
    while True:
        text = "\n".join(server.log_lines())
        if text.count("Booting worker with pid") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "Using worker: gthread" in text
    assert text.count("Booting worker with pid") >= 2


def masked(page: bytes) -> bytes:
    tokens = set(CSRF_FIELD.findall(page))
    assert tokens, "the page carries a CSRF token (what BREACH is after)"
    for token in tokens:
        page = page.replace(token, b"TOKEN")
    return re.sub(rb'nonce="[^"]+"', b'nonce="NONCE"', page)     # the CSP nonce is per response


def _page(server, cookie, **headers):
    return server.request("GET", "/login", headers={"Cookie": cookie, **headers})


def test_a_page_asked_with_gzip_from_our_own_pages_is_gzip_encoded_and_decodes_to_the_same_page(server):
    _, first, _ = server.request("GET", "/login")
    cookie = first["set-cookie"].split(";", 1)[0]
    status, plain_headers, plain = _page(server, cookie)
    assert status == 200 and "content-encoding" not in plain_headers
    status, headers, body = _page(server, cookie, **{"Accept-Encoding": "gzip",
                                                     "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert masked(gzip.decompress(body)) == masked(plain)
    vary = {v.strip().lower() for v in headers["vary"].split(",")}
    assert {"accept-encoding", "sec-fetch-site", "hx-request"} <= vary
    assert headers["cache-control"] == "no-store"

    status, headers, body = _page(server, cookie, **{"Accept-Encoding": "br, gzip", "Sec-Fetch-Site": "none"})
    assert headers["content-encoding"] == "br"
    assert masked(brotli.decompress(body)) == masked(plain)


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", None])
def test_a_page_a_cross_site_request_could_ask_for_is_never_compressed(server, fetch_site):
    """BREACH needs the victim's browser to send many requests from the attacker's page; the browser
    marks those cross-site. A request without the mark (an old browser) is treated the same."""
    headers = {"Accept-Encoding": "gzip, br"}
    if fetch_site:
        headers["Sec-Fetch-Site"] = fetch_site
    status, answer, body = server.request("GET", "/login", headers=headers)
    assert status == 200 and "content-encoding" not in answer
    assert b"csrf_token" in body


def _stylesheet_url(server) -> str:
    _, _, page = server.request("GET", "/login")
    (url,) = set(re.findall(rb'href="(/static/css/app\.css\?v=[0-9a-f]{12})"', page))
    return url.decode()


def test_a_fingerprinted_stylesheet_is_gzip_encoded_and_kept_a_year(server):
    url = _stylesheet_url(server)
    on_disk = (ROOT / "app" / "static" / "css" / "app.css").read_bytes()
    for _ in range(2):                       # compressed once, then from the process's cache
        status, headers, body = server.request("GET", url, headers={"Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["content-encoding"] == "gzip"
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "accept-encoding" in headers["vary"].lower()
        assert int(headers["content-length"]) == len(body) < len(on_disk)
        assert gzip.decompress(body) == on_disk
    # Its validator names the encoding, and a revalidation with it is answered 304.
    assert headers["etag"].endswith(':gzip"')
    status, _, body = server.request("GET", url, headers={"Accept-Encoding": "gzip",
                                                          "If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    # A range of the file is sent as it is, never a compressed whole under a Content-Range.
    status, headers, body = server.request("GET", url, headers={"Accept-Encoding": "gzip",
                                                                "Range": "bytes=0-9"})
    assert status == 206 and "content-encoding" not in headers and body == on_disk[:10]
    # Without Accept-Encoding: the file itself.
    status, headers, body = server.request("GET", url)
    assert status == 200 and "content-encoding" not in headers and body == on_disk


def test_json_log_lines_parse_and_carry_the_request_id(server):
    request_id = "test-" + uuid.uuid4().hex
    status, headers, _ = server.request("GET", "/login", headers={"X-Request-Id": request_id})
    assert status == 200 and headers["x-request-id"] == request_id
    # A request the app itself logs about (a Stripe webhook with a bad signature).
    webhook_id = "test-" + uuid.uuid4().hex
    server.request("POST", "/webhooks/stripe", body=b"{}",
                   headers={"X-Request-Id": webhook_id, "Stripe-Signature": "t=1,v1=bad",
                            "Content-Type": "application/json"})
    server.request("GET", f"/r/{SECRET_PATH_TOKEN}")
    deadline = time.monotonic() + 15          # the access lines are written after the responses
    while True:
        lines = server.log_lines()
        if (sum(request_id in line or "/r/[redacted]" in line for line in lines) >= 2
                or time.monotonic() > deadline):
            break
        time.sleep(0.2)
    records = [json.loads(line) for line in lines]          # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message", "request_id", "job_id"} <= record.keys(), record
    (access,) = [r for r in records if r["logger"] == "gunicorn.access" and r["request_id"] == request_id]
    assert access["level"] == "INFO" and access["http"]["path"] == "/login" and access["http"]["status"] == 200
    assert access["time"].endswith("+00:00")
    app_lines = [r for r in records if r["request_id"] == webhook_id and r["logger"] != "gunicorn.access"]
    assert app_lines and app_lines[0]["logger"].startswith("app"), records[-5:]
    assert not any(SECRET_PATH_TOKEN in line for line in lines)
    assert any(r["logger"] == "gunicorn.access" and r["http"]["path"] == "/r/[redacted]" for r in records)


def test_sigterm_lets_an_open_request_finish_then_stops_every_process(app, database_url, service_urls,
                                                                     tmp_path):
    server = start_server(tmp_path, database_url, service_urls["REDIS_URL"], WEB_CONCURRENCY=1,
                          WEB_GRACEFUL_TIMEOUT=20)
    try:
        _stop_with_an_open_request(server)
    finally:
        stop(server)


def _stop_with_an_open_request(server: Server) -> None:
    worker_pids = [int(m) for m in re.findall(r"Booting worker with pid: (\d+)", "\n".join(server.log_lines()))]
    assert worker_pids
    body = b"email=nobody%40example.com&password=not-the-password"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(1.0)                        # the request is in a worker, reading its body
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.proc.poll() is None, "the master waits for the open request"
        conn.sendall(body[10:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert server.proc.wait(timeout=30) == 0
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    text = "\n".join(server.log_lines())
    assert "Handling signal: term" in text and "Shutting down: Master" in text


# -- the config file itself ---------------------------------------------------------------


def _config(monkeypatch, **env) -> dict:
    for name in CONTROLLED:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return runpy.run_path(str(CONFIG))


def test_the_config_binds_port_and_sizes_itself_from_the_environment(monkeypatch):
    config = _config(monkeypatch, PORT=5095, WEB_CONCURRENCY=3, WEB_THREADS=8, WEB_TIMEOUT=45,
                     WEB_GRACEFUL_TIMEOUT=20, WEB_KEEPALIVE=75)
    assert config["bind"] == ["0.0.0.0:5095"]
    assert (config["workers"], config["threads"], config["timeout"]) == (3, 8, 45)
    assert (config["graceful_timeout"], config["keepalive"]) == (20, 75)
    assert config["preload_app"] is True and config["worker_class"] == "gthread"


def test_the_config_defaults_suit_a_two_core_machine(monkeypatch):
    config = _config(monkeypatch)
    assert config["bind"] == ["0.0.0.0:8000"]
    assert config["workers"] == len(os.sched_getaffinity(0))
    assert config["threads"] == 4 and config["timeout"] == 60 and config["graceful_timeout"] == 30
    assert 0 < config["keepalive"] <= 75
    assert config["control_socket_disable"] is True


def test_the_master_freezes_the_collector_before_each_fork(monkeypatch):
    config = _config(monkeypatch)
    gc.unfreeze()
    try:
        config["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


class _Response:
    status, sent = "200 OK", 1234
    headers = [("Content-Type", "text/html"), ("X-Request-Id", "rid-42")]


def _access_line(monkeypatch, tmp_path, app_env: str) -> str:
    from datetime import timedelta

    from gunicorn.config import Config

    config = _config(monkeypatch, APP_ENV=app_env)
    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("access_log_format", config["access_log_format"])
    logger = config["logger_class"](cfg)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/r/{SECRET_PATH_TOKEN}?from=sms",
               "PATH_INFO": f"/r/{SECRET_PATH_TOKEN}", "QUERY_STRING": "from=sms", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "203.0.113.9", "HTTP_USER_AGENT": "Phone/1.0"}
    try:
        logger.access(_Response(), [("User-Agent", "Phone/1.0")], environ, timedelta(milliseconds=12))
    finally:
        for handler in logger.access_log.handlers + logger.error_log.handlers:
            handler.close()
        logger.access_log.handlers.clear()
        logger.error_log.handlers.clear()
    (line,) = (tmp_path / "access.log").read_text().splitlines()
    return line


def test_the_access_log_in_development_is_text_without_tokens_query_address_or_agent(monkeypatch, tmp_path):
    line = _access_line(monkeypatch, tmp_path, "development")
    assert line == '"GET /r/[redacted] HTTP/1.1" 200 1234 12ms rid-42'


def test_the_access_log_in_production_is_json_without_tokens_query_address_or_agent(monkeypatch, tmp_path):
    record = json.loads(_access_line(monkeypatch, tmp_path, "production"))
    assert record["request_id"] == "rid-42" and record["logger"] == "gunicorn.access"
    assert record["http"] == {"method": "GET", "path": "/r/[redacted]", "status": 200, "bytes": 1234,
                              "duration_ms": 12}
    text = json.dumps(record)
    assert not any(word in text for word in (SECRET_PATH_TOKEN, "from=sms", "203.0.113.9", "Phone/1.0"))
