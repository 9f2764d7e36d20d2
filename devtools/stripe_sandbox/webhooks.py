"""Webhook delivery: signed like Stripe, retried with backoff, and misbehaving on request."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class Mode:
    duplicate: int = 1          # deliver each event this many times
    shuffle: bool = False       # hold events for shuffle_window seconds, then deliver them out of order
    shuffle_window: float = 0.3
    delay: float = 0.0          # seconds before the first attempt
    drop: bool = False          # never deliver
    count: int | None = None    # apply to the next N events only (None: until reset)
    sign_offset: int = 0        # added to the signature timestamp (negative: an old signature)
    max_attempts: int = 5       # attempts per delivery, retried on non-2xx / connection errors
    retry_base: float = 0.2     # first retry after this many seconds, doubling each time

    @classmethod
    def from_dict(cls, d: dict) -> "Mode":
        m = cls()
        for k, v in d.items():
            if not hasattr(m, k):
                raise ValueError(f"unknown webhook mode setting: {k}")
            cur = getattr(cls, k, None)
            if k in ("shuffle", "drop"):
                v = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
            elif k in ("duplicate", "max_attempts", "sign_offset"):
                v = int(v)
            elif k == "count":
                v = None if v in (None, "", "null") else int(v)
            else:
                v = float(v)
            del cur
            setattr(m, k, v)
        if m.duplicate < 0 or m.max_attempts < 1:
            raise ValueError("duplicate must be >= 0 and max_attempts >= 1")
        return m


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    payload: bytes = field(compare=False)
    url: str = field(compare=False)
    secret: str = field(compare=False)
    attempt: int = field(compare=False, default=1)
    copy: int = field(compare=False, default=1)
    mode: Mode = field(compare=False, default_factory=Mode)


class Dispatcher:
    def __init__(self, default_secret: str):
        self.default_secret = default_secret
        self.mode = Mode()
        self.cond = threading.Condition()
        self.jobs: list[_Job] = []
        self.held: list[tuple[dict, list[tuple[str, str]], Mode]] = []
        self.held_until = 0.0
        self.seq = 0
        self.in_flight = 0
        self.log: list[dict] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self.thread.start()

    # -- configuration ------------------------------------------------------
    def set_mode(self, d: dict) -> Mode:
        m = Mode.from_dict(d)
        with self.cond:
            self.mode = m
        return m

    def reset(self) -> None:
        with self.cond:
            self.mode = Mode()

    def endpoint_count(self, store, event_type: str) -> int:
        return len(self.endpoints_for(store, event_type))

    @staticmethod
    def endpoints_for(store, event_type: str) -> list[tuple[str, str]]:
        out = []
        for we in store.all("webhook_endpoint"):
            if we.get("status") != "enabled":
                continue
            ev = we.get("enabled_events") or ["*"]
            if "*" in ev or event_type in ev:
                out.append((we["url"], we["secret"]))
        return out

    # -- enqueue ------------------------------------------------------------
    def enqueue(self, store, events: list[dict]) -> None:
        if not events:
            return
        with self.cond:
            for evt in events:
                targets = self.endpoints_for(store, evt["type"])
                mode = self.mode
                if mode.count is not None:
                    mode.count -= 1
                    if mode.count <= 0:
                        self.mode = Mode()
                if not targets:
                    continue
                if mode.drop:
                    for url, _ in targets:
                        self.log.append({"event_id": evt["id"], "type": evt["type"], "url": url,
                                         "dropped": True, "attempt": 0, "status": None, "ok": False,
                                         "at": time.time()})
                    continue
                if mode.shuffle:
                    if not self.held:
                        self.held_until = time.time() + mode.shuffle_window
                    self.held.append((evt, targets, mode))
                    continue
                self._schedule(evt, targets, mode, time.time() + mode.delay)
            self.cond.notify_all()

    def _schedule(self, evt: dict, targets, mode: Mode, due: float) -> None:
        payload = json.dumps(evt, indent=2).encode()
        for url, secret in targets:
            for copy in range(1, mode.duplicate + 1):
                self.seq += 1
                self.jobs.append(_Job(due, self.seq, evt["id"], evt["type"], payload, url, secret, 1, copy,
                                      mode))
        self.jobs.sort()

    def _release_held(self) -> None:
        held = self.held
        self.held = []
        if len(held) > 1:
            order = list(range(len(held)))
            while order == sorted(order):
                random.shuffle(order)
            held = [held[i] for i in order]
        now = time.time()
        for evt, targets, mode in held:
            self._schedule(evt, targets, mode, now + mode.delay)

    # -- state for tests ----------------------------------------------------
    def pending(self) -> int:
        with self.cond:
            return len(self.jobs) + len(self.held) + self.in_flight

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        with self.cond:
            while self.jobs or self.held or self.in_flight:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))
            return True

    def deliveries(self) -> list[dict]:
        with self.cond:
            return list(self.log)

    def clear_log(self) -> None:
        with self.cond:
            self.log.clear()

    # -- worker ---------------------------------------------------------------
    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self._stop:
                        return
                    now = time.time()
                    if self.held and now >= self.held_until:
                        self._release_held()
                    if self.jobs and self.jobs[0].due <= now:
                        job = self.jobs.pop(0)
                        self.in_flight += 1
                        break
                    waits = [0.5]
                    if self.jobs:
                        waits.append(self.jobs[0].due - now)
                    if self.held:
                        waits.append(self.held_until - now)
                    self.cond.wait(max(0.005, min(waits)))
            status, err = self._deliver(job)
            ok = status is not None and 200 <= status < 300
            with self.cond:
                self.in_flight -= 1
                self.log.append({"event_id": job.event_id, "type": job.event_type, "url": job.url,
                                 "attempt": job.attempt, "copy": job.copy, "status": status, "ok": ok,
                                 "error": err, "dropped": False, "at": time.time()})
                if not ok and job.attempt < job.mode.max_attempts:
                    job.attempt += 1
                    job.due = time.time() + job.mode.retry_base * (2 ** (job.attempt - 2))
                    self.seq += 1
                    job.seq = self.seq
                    self.jobs.append(job)
                    self.jobs.sort()
                self.cond.notify_all()

    def _deliver(self, job: _Job) -> tuple[int | None, str | None]:
        u = urllib.parse.urlsplit(job.url)
        ts = int(time.time()) + job.mode.sign_offset
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(job.payload, job.secret, ts),
            "Connection": "close",
        }
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=5)
        try:
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            conn.request("POST", path, body=job.payload, headers=headers)
            resp = conn.getresponse()
            resp.read()
            resp.close()
            return resp.status, None
        except Exception as e:  # noqa: BLE001 - any network failure is a failed attempt
            return None, type(e).__name__
        finally:
            conn.close()
