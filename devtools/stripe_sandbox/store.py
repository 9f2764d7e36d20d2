"""State of one sandbox instance: a sqlite file in its data directory.

Objects are stored as JSON documents keyed by id.  A key named ``_sandbox``
inside a document holds private bookkeeping (e.g. a card's behaviour name) and
is never sent to clients.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import threading
import time
from typing import Any, Callable, Iterable

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(n))


class Store:
    def __init__(self, data_dir: str):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "sandbox.sqlite3")
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS objects (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT UNIQUE NOT NULL,
                type TEXT NOT NULL,
                created INTEGER NOT NULL,
                data TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS objects_type ON objects(type, created, seq);
            CREATE INDEX IF NOT EXISTS objects_customer ON objects(type, json_extract(data, '$.customer'));
            CREATE INDEX IF NOT EXISTS objects_charge ON objects(type, json_extract(data, '$.charge'));
            CREATE INDEX IF NOT EXISTS objects_payment_intent ON objects(type, json_extract(data, '$.payment_intent'));
            CREATE TABLE IF NOT EXISTS idempotency (
                scope TEXT NOT NULL,
                key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                status INTEGER NOT NULL,
                body TEXT NOT NULL,
                created REAL NOT NULL,
                PRIMARY KEY (scope, key)
            );
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS timers (obj_id TEXT NOT NULL, kind TEXT NOT NULL, due INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS timers_obj ON timers(obj_id);
            CREATE INDEX IF NOT EXISTS timers_due ON timers(kind, due);
            """
        )
        self._in_tx = False
        self._clock_offset: float | None = None      # meta's clock_offset, read once

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- transactions -------------------------------------------------
    def begin(self) -> None:
        self.db.execute("BEGIN")
        self._in_tx = True

    def commit(self) -> None:
        if self._in_tx:
            self.db.execute("COMMIT")
            self._in_tx = False

    def rollback(self) -> None:
        if self._in_tx:
            self.db.execute("ROLLBACK")
            self._in_tx = False
            self._clock_offset = None

    # -- clock ----------------------------------------------------------
    def clock_offset(self) -> float:
        if self._clock_offset is None:
            self._clock_offset = float(self.get_meta("clock_offset", "0"))
        return self._clock_offset

    def now(self) -> int:
        return int(time.time() + self.clock_offset())

    def advance_clock(self, seconds: float) -> int:
        self.set_meta("clock_offset", str(self.clock_offset() + float(seconds)))
        return self.now()

    def get_meta(self, k: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return row[0] if row else default

    def set_meta(self, k: str, v: str) -> None:
        self.db.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))
        if k == "clock_offset":
            self._clock_offset = None

    # -- objects ----------------------------------------------------------
    def insert(self, obj: dict) -> dict:
        self.db.execute(
            "INSERT INTO objects(id, type, created, data) VALUES(?, ?, ?, ?)",
            (obj["id"], obj["object"], int(obj.get("created") or self.now()), json.dumps(obj)),
        )
        return obj

    def save(self, obj: dict) -> dict:
        cur = self.db.execute("UPDATE objects SET data=? WHERE id=?", (json.dumps(obj), obj["id"]))
        if cur.rowcount == 0:
            self.insert(obj)
        return obj

    def get(self, id_: str, type_: str | None = None) -> dict | None:
        if not isinstance(id_, str):
            return None
        row = self.db.execute("SELECT type, data FROM objects WHERE id=?", (id_,)).fetchone()
        if row is None or (type_ is not None and row[0] != type_):
            return None
        return json.loads(row[1])

    INDEXED = ("customer", "charge", "payment_intent")

    def all(self, type_: str, where: Callable[[dict], bool] | None = None, **equal: str | None) -> list[dict]:
        """Objects of a type, newest first. ``equal`` (customer=, charge=, payment_intent=; None: any)
        narrows them in SQL, by an index, before ``where`` looks at each."""
        sql, args = "SELECT data FROM objects WHERE type=?", [type_]
        for field_, value in equal.items():
            if field_ not in self.INDEXED:
                raise ValueError(f"not an indexed field: {field_}")
            if value is not None:
                sql += f" AND json_extract(data, '$.{field_}') = ?"
                args.append(value)
        rows = self.db.execute(sql + " ORDER BY created DESC, seq DESC", args).fetchall()
        out = (json.loads(r[0]) for r in rows)
        return [o for o in out if where is None or where(o)]

    # -- idempotency ------------------------------------------------------
    def idem_get(self, scope: str, key: str, max_age: float) -> tuple[str, int, str] | None:
        row = self.db.execute(
            "SELECT fingerprint, status, body, created FROM idempotency WHERE scope=? AND key=?", (scope, key)
        ).fetchone()
        if row is None:
            return None
        if time.time() + self.clock_offset() - row[3] > max_age:
            self.db.execute("DELETE FROM idempotency WHERE scope=? AND key=?", (scope, key))
            return None
        return row[0], row[1], row[2]

    def idem_put(self, scope: str, key: str, fingerprint: str, status: int, body: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO idempotency(scope, key, fingerprint, status, body, created) VALUES(?,?,?,?,?,?)",
            (scope, key, fingerprint, status, body, time.time() + self.clock_offset()),
        )


def public(obj: Any) -> Any:
    """A copy of obj without private ``_sandbox`` keys."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if k != "_sandbox"}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def iter_ids(values: Iterable[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str)]
