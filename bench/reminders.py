"""Benchmark (not a test): N reminders falling due at the same moment, drained by the RQ worker.

Issue 11, row 4 — goal: 10,000 reminders due at once in the outbox within 60 s with 2 workers,
0 duplicates.

N confirmed appointments (spread over providers, distinct slots) each get one queued ``reminder``
notification (email, so the dev outbox sender), all with the same ``scheduled_for`` = T, a few
seconds ahead. The rows are written in bulk (SQL), then exactly what the after-commit hook of
``notifications.queue`` does for reminders due at one second is done once: ``schedule_send(...,
batch=True)`` -> one scheduled ``send_due_batch`` job for that second. ``python worker.py`` runs with
WORKER_PROCESSES=2 (an RQ worker pool of 2) and its scheduler. The clock starts at T and stops when
every row is ``sent``/``delivered``; given up after 75 s (the rate so far is printed).

Duplicates: any outbox hand-over logged twice for one notification (the worker's log lines
``outbox: ... for notification <id>``), or any row sent with more than one attempt.

``--smtp``: the same, but email goes over SMTP to a local sink this script runs (a thread on
127.0.0.1 that accepts every message and keeps its Message-ID) instead of the dev outbox; duplicates
are then Message-IDs received more than once. The goal is stated for the outbox (the default).

For scale, the bare insert baseline (bench/baseline.py under the same gunicorn.conf.py) is measured
in the same run and reminders/s is put beside bare inserts/s; the goal itself is absolute.

    .venv/bin/python bench/reminders.py [--reminders 10000] [--workers 2] [--smtp]

Prints the absolute figures, then the ratio, then the goal line.
"""
from __future__ import annotations

import argparse
import collections
import re
import socketserver
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch import scratch_services  # noqa: E402
from bench import serve  # noqa: E402

GOAL_S = 60.0
LEAD_S = 12.0          # T is this far ahead of the commit: the worker starts meanwhile
SENT_RE = re.compile(r"outbox: \w+ message \S+ for notification (\d+)")
MESSAGE_ID_RE = re.compile(rb"^Message-ID:\s*<notification\.(\d+)\.", re.IGNORECASE | re.MULTILINE)


class SmtpSink:
    """A local SMTP server (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that accepts every message and
    counts, per notification id (from the Message-ID), how many arrived; and the sessions opened."""

    def __init__(self):
        self.received: collections.Counter = collections.Counter()
        self.sessions = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                with sink.lock:
                    sink.sessions += 1
                out = self.wfile
                out.write(b"220 bench ESMTP\r\n")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        out.write(b"250-bench\r\n250 8BITMIME\r\n")
                    elif verb == b"DATA":
                        out.write(b"354 go ahead\r\n")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data.append(chunk)
                        found = MESSAGE_ID_RE.search(b"".join(data))
                        with sink.lock:
                            sink.received[int(found.group(1)) if found else -1] += 1
                        out.write(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        out.write(b"221 bye\r\n")
                        return
                    else:                                  # HELO, MAIL, RCPT, RSET, NOOP
                        out.write(b"250 ok\r\n")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=10000, help="reminders due at once (default 10000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--bare-duration", type=float, default=8.0, help="seconds of the bare measurement")
    parser.add_argument("--smtp", action="store_true", help="email over SMTP to a local sink, not the outbox")
    args = parser.parse_args()
    sink = SmtpSink() if args.smtp else None
    extra = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_STARTTLS": "0"} if sink else None
    try:
        with scratch_services("bench-reminders-") as (database_url, redis_url, tmp):
            with serve.stack(database_url, redis_url, tmp, extra_env=extra) as st:
                return run(st, args, sink)
    finally:
        if sink is not None:
            sink.stop()


def run(st, args, sink: SmtpSink | None = None) -> int:
    from sqlalchemy import text

    from app.extensions import db
    from app.jobs.notifications import schedule_send

    n = args.reminders
    providers = max(1, n // 1000 + 1)
    clinic = serve.seed_clinic(st.app, providers=providers, patients=1)
    print(f"reminders: {n} due at the same second, {args.workers} worker processes, "
          f"{'SMTP to a local sink' if sink else 'the dev outbox'}", flush=True)
    st.start_servers()
    bare = serve.measure_bare(st, concurrency=16, duration=args.bare_duration)

    with st.app.app_context():
        session = db.session
        patient_id, user_id = session.execute(text(
            "SELECT p.id, u.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = :e"),
            {"e": clinic["patients"][0]}).one()
        base = (datetime.now(timezone.utc) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        t0 = time.perf_counter()
        for k, pid in enumerate(clinic["providers"]):
            count = min(1000, n - k * 1000)
            if count <= 0:
                break
            session.execute(text(
                "INSERT INTO appointments (patient_id, provider_id, type_id, status, starts_at, ends_at, "
                " blocked_start, blocked_end, hold_extended, price_cents, payment_timing, modality) "
                "SELECT :patient, :provider, :type, 'confirmed', :base + g * interval '30 minutes', "
                " :base + g * interval '30 minutes' + interval '30 minutes', :base + g * interval '30 minutes', "
                " :base + g * interval '30 minutes' + interval '30 minutes', false, 12500, 'deposit_to_book', 'telehealth' "
                "FROM generate_series(0, :count - 1) AS g"),
                {"patient": patient_id, "provider": pid, "type": clinic["type"], "base": base, "count": count})
        due = (datetime.now(timezone.utc) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
        session.execute(text(
            "INSERT INTO notifications (dedupe_key, channel, template, recipient, user_id, appointment_id, "
            " context, scheduled_for, status, attempts) "
            "SELECT 'reminder:bench:' || a.id, 'email', 'reminder', :email, :user, a.id, "
            " '{\"offset_seconds\": 3600}'::json, :due, 'queued', 0 FROM appointments a"),
            {"email": clinic["patients"][0], "user": user_id, "due": due})
        first = session.execute(text("SELECT min(id) FROM notifications WHERE template = 'reminder'")).scalar()
        total = session.execute(text("SELECT count(*) FROM notifications WHERE template = 'reminder'")).scalar()
        session.commit()
        schedule_send(first, due, 0, batch=True)     # what notifications.queue's after-commit hook asks for
        session.remove()
    print(f"{'setup':>14}: {total} reminder rows due at {due.isoformat()} (written in "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    worker = st.worker(args.workers)

    finished_at = None
    last = 0
    with st.app.app_context():
        while True:
            now = datetime.now(timezone.utc)
            done = db.session.execute(text("SELECT count(*) FROM notifications WHERE template = 'reminder' "
                                           "AND status IN ('sent', 'delivered')")).scalar()
            db.session.rollback()
            if done != last and now >= due:
                last = done
            if done >= total:
                finished_at = now
                break
            if (now - due).total_seconds() > GOAL_S + 15 or worker.proc.poll() is not None:
                break
            time.sleep(0.25)
        states = dict(db.session.execute(text("SELECT status, count(*) FROM notifications "
                                              "WHERE template = 'reminder' GROUP BY status")).all())
        multi = db.session.execute(text("SELECT count(*) FROM notifications WHERE template = 'reminder' "
                                        "AND attempts > 1")).scalar()
        db.session.remove()
    worker.stop(fast=True)
    if sink is not None:
        with sink.lock:
            handed = collections.Counter(sink.received)
        where = f"received by the SMTP sink ({sink.sessions} SMTP sessions)"
    else:
        handed = collections.Counter(SENT_RE.findall((st.tmp / "worker.log").read_text(errors="replace")))
        where = "handed to the outbox"
    dup_sends = sum(1 for v in handed.values() if v > 1)
    took = (finished_at - due).total_seconds() if finished_at else None
    rate = total / took if took else last / (GOAL_S + 15)
    if took is not None:
        print(f"{'reminders':>14}: {total} sent in {took:.1f} s after due ({rate:.1f}/s)")
    else:
        print(f"{'reminders':>14}: only {last} of {total} sent {GOAL_S + 15:.0f} s after due; states {states}")
    print(f"{'duplicates':>14}: {dup_sends} notifications {where} more than once "
          f"({sum(handed.values())} hand-overs for {len(handed)} rows); {multi} rows with attempts > 1")
    print(f"ratio: reminders {rate:.1f}/s / bare insert {bare.rate:.1f} req/s = {rate / bare.rate:.2f}x (context only)")
    ok = took is not None and took <= GOAL_S and dup_sends == 0 and multi == 0
    print(f"goal {n} reminders within {GOAL_S:.0f} s with {args.workers} workers, 0 duplicates: {serve.verdict(ok)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
