"""Local stand-ins for the world we don't run: Twilio's Messages API (http.server) and an SMTP
server (socketserver), each in a thread on 127.0.0.1, driven by the real client libraries."""
from __future__ import annotations

import email
import email.policy
import itertools
import json
import socketserver
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.helpers.messages import ACCOUNT_SID


@contextmanager
def serving(fake):
    """``fake`` (a FakeTwilio or FakeSmtp) answering in its thread while the block runs."""
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join(timeout=5)


# -- Twilio's Messages API ----------------------------------------------------------------------------

class FakeTwilio:
    """Records each request; answers the next queued (status, json) or a created message."""

    def __init__(self):
        self.requests: list[dict] = []
        self.replies: list[tuple[int, dict]] = []
        self._sids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                fake.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                      "form": form})
                if fake.replies:
                    status, payload = fake.replies.pop(0)
                else:
                    status, payload = 201, fake.message_resource(form)
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def message_resource(self, form: dict) -> dict:
        sid = f"SM{next(self._sids):032x}"
        return {"sid": sid, "account_sid": ACCOUNT_SID, "to": form.get("To"), "from": form.get("From"),
                "body": form.get("Body"), "status": "queued", "direction": "outbound-api", "num_segments": "1",
                "num_media": "0", "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
                "api_version": "2010-04-01", "messaging_service_sid": None,
                "date_created": "Mon, 07 Dec 2026 13:00:00 +0000", "date_updated": "Mon, 07 Dec 2026 13:00:00 +0000",
                "date_sent": None, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
                "subresource_uris": {}}

    def fail_next(self, status: int, code: int, message: str = "error") -> None:
        self.replies.append((status, {"code": code, "message": message, "status": status,
                                      "more_info": f"https://www.twilio.com/docs/errors/{code}"}))


# -- SMTP -----------------------------------------------------------------------------------------------

class FakeSmtp:
    """A small SMTP server (RFC 5321 subset: EHLO, MAIL, RCPT, DATA, RSET, QUIT) that keeps what arrives."""

    def __init__(self, refuse: set[str] | None = None):
        self.messages: list[dict] = []
        self.refuse = {r.lower() for r in (refuse or set())}
        # A slow server: it keeps the message, then waits this long before its reply to the end of DATA.
        self.data_reply_delay = 0.0
        self.late_replies: list[str] = []        # replies a client had stopped waiting for
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self):
                self.reply("220 localhost test ESMTP")
                sender, recipients = None, []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode().rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-localhost" if verb == "EHLO" else "250 localhost")
                        if verb == "EHLO":
                            self.reply("250 8BITMIME")
                    elif verb == "MAIL":
                        sender, recipients = line.split(":", 1)[1].strip().split()[0].strip("<>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        address = line.split(":", 1)[1].strip().split()[0].strip("<>")
                        if address.lower() in fake.refuse:
                            self.reply("550 5.1.1 No such user here")
                        else:
                            recipients.append(address)
                            self.reply("250 OK")
                    elif verb == "DATA":
                        if not recipients:
                            self.reply("503 5.5.1 No valid recipients")
                            continue
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while True:
                            data = self.rfile.readline()
                            if data in (b".\r\n", b".\n", b""):
                                break
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        fake.messages.append({"from": sender, "to": recipients,
                                              "message": email.message_from_bytes(b"".join(lines),
                                                                                  policy=email.policy.default)})
                        if fake.data_reply_delay:
                            time.sleep(fake.data_reply_delay)
                            try:
                                self.reply("250 OK queued")
                            except OSError:          # the client hung up while we were slow
                                fake.late_replies.append("250 OK queued")
                                return
                            continue
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        sender, recipients = (None, []) if verb == "RSET" else (sender, recipients)
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("502 5.5.2 Command not recognized")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]
