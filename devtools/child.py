"""A dev service run as a child process (the Stripe sandbox, the payer simulator): started with
``python -m <module>`` from the checkout, ready when it prints ``<READY prefix><url>`` on stdout,
its stderr kept in a log file under its data directory, stopped with SIGTERM (then SIGKILL)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn(module: str, args: list[str], *, ready: str, log_path: str, timeout: float, error: type[Exception],
          what: str) -> tuple[subprocess.Popen, str, threading.Thread]:
    """Start ``python -m module args`` and wait for its ready line: (process, url, stdout reader).
    ``error(...)`` with the log's tail when it exits or is not ready within ``timeout`` seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env, text=True)
    found: list[str] = []

    def reader():
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(ready) and not found:
                found.append(line[len(ready):].strip())
        proc.stdout.close()

    thread = threading.Thread(target=reader, name=f"{module}-stdout", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            thread.join(timeout=2)
            with open(log_path, errors="replace") as f:
                tail = f.read()[-4000:]
            raise error(f"{what} did not become ready within {timeout:.0f}s (exit code {proc.returncode}). "
                        f"log:\n{tail}")
        time.sleep(0.01)
    return proc, found[0], thread


def stop(proc: subprocess.Popen, reader: threading.Thread | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the stdout reader joined."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if reader is not None:
        reader.join(timeout=2)


class ChildService:
    """What both sandboxes' process handles share: stop once (also as a context manager), whether it
    still runs, and calls to its ``/_sandbox/`` admin routes (JSON in and out; an HTTP error raises
    ``error``). Subclasses set ``error`` and, after ``spawn``, ``proc``, ``api_base`` and ``_reader``."""
    error: type[Exception] = RuntimeError
    proc: subprocess.Popen
    api_base: str
    _reader: threading.Thread | None = None
    _stopped = False

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        stop(self.proc, self._reader, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return not self._stopped and self.proc.poll() is None

    def admin(self, method: str, route: str, data: dict | None = None, timeout: float = 30.0) -> dict:
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.api_base + "/_sandbox/" + route.lstrip("/"), data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            try:
                detail = e.read().decode()
            finally:
                e.close()
            raise self.error(f"{method} /_sandbox/{route} failed: {e.code} {detail}") from None


def serve(app, srv, *, ready: str, name: str, tick_seconds: float) -> int:
    """The child's side: run ``srv`` until SIGTERM / SIGINT, calling ``app.sweep()`` every
    ``tick_seconds`` (timers fall due in real time, not only on the next API call), after printing
    the ready line ``<ready><app.api_base>``; then close the server and ``app``."""
    import signal

    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def tick():
        while not stopping.wait(tick_seconds):
            try:
                app.sweep()
            except Exception as error:  # noqa: BLE001 - keep ticking; the next call sweeps again
                print(f"{name} sweep failed: {error.__class__.__name__}", file=sys.stderr, flush=True)

    threading.Thread(target=tick, name=f"{name}-ticker", daemon=True).start()
    print(f"{ready}{app.api_base}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()
        app.close()
    return 0
