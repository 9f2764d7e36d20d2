"""State of one payer simulator: a sqlite file in its data directory.

Payers, plans and members are JSON documents keyed by id; claims by our claim id; remittances carry a
monotonic ``seq`` (the cursor of ``GET /remittances?since=``); every eligibility answer is kept as
returned (the "raw" 271 content).  One lock serialises everything: this is a test double, not a payer.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading

_TABLES = """
CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
                                 PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS claims (claim_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
                                   adjudicate_at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS claims_due ON claims(status, adjudicate_at);
CREATE TABLE IF NOT EXISTS remittances (seq INTEGER PRIMARY KEY AUTOINCREMENT, claim_id TEXT UNIQUE NOT NULL,
                                        data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS eligibility (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
                                        data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


class Store:
    def __init__(self, data_dir: str):
        os.makedirs(data_dir, exist_ok=True)
        self.path = os.path.join(data_dir, "payer_sandbox.sqlite3")
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_TABLES)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def tx(self):
        """``with store.tx():`` one transaction under the lock."""
        return _Tx(self)

    # -- documents (payer, plan, member) -----------------------------------------
    def get(self, kind: str, id_: str) -> dict | None:
        row = self.db.execute("SELECT data FROM docs WHERE kind=? AND id=?", (kind, id_)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, id_: str, data: dict) -> dict:
        self.db.execute("INSERT INTO docs(kind, id, data) VALUES(?,?,?) "
                        "ON CONFLICT(kind, id) DO UPDATE SET data=excluded.data", (kind, id_, json.dumps(data)))
        return data

    def delete(self, kind: str, id_: str) -> bool:
        return self.db.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, id_)).rowcount > 0

    def all(self, kind: str) -> list[dict]:
        rows = self.db.execute("SELECT data FROM docs WHERE kind=? ORDER BY id", (kind,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- claims ------------------------------------------------------------------
    def claim(self, claim_id: str) -> tuple[str, dict] | None:
        row = self.db.execute("SELECT fingerprint, data FROM claims WHERE claim_id=?", (claim_id,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def insert_claim(self, claim: dict, fingerprint: str) -> None:
        self.db.execute("INSERT INTO claims(claim_id, fingerprint, status, adjudicate_at, data) VALUES(?,?,?,?,?)",
                        (claim["claim_id"], fingerprint, claim["status"], claim["adjudicate_at"], json.dumps(claim)))

    def save_claim(self, claim: dict) -> None:
        self.db.execute("UPDATE claims SET status=?, adjudicate_at=?, data=? WHERE claim_id=?",
                        (claim["status"], claim["adjudicate_at"], json.dumps(claim), claim["claim_id"]))

    def due_claims(self, now: float) -> list[dict]:
        rows = self.db.execute("SELECT data FROM claims WHERE status='accepted' AND adjudicate_at<=? "
                               "ORDER BY adjudicate_at", (now,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- remittances -------------------------------------------------------------
    def add_remittance(self, remittance: dict) -> dict:
        cur = self.db.execute("INSERT INTO remittances(claim_id, data) VALUES(?, ?)",
                              (remittance["claim_id"], "{}"))
        remittance["seq"] = cur.lastrowid
        self.db.execute("UPDATE remittances SET data=? WHERE seq=?", (json.dumps(remittance), cur.lastrowid))
        return remittance

    def remittance_for(self, claim_id: str) -> dict | None:
        row = self.db.execute("SELECT data FROM remittances WHERE claim_id=?", (claim_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def remittances_since(self, since: int, limit: int) -> list[dict]:
        rows = self.db.execute("SELECT data FROM remittances WHERE seq>? ORDER BY seq LIMIT ?",
                               (since, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- eligibility answers ----------------------------------------------------------
    def add_eligibility(self, response: dict) -> None:
        self.db.execute("INSERT INTO eligibility(id, data) VALUES(?, ?)", (response["id"], json.dumps(response)))

    def eligibility(self, limit: int = 100) -> list[dict]:
        rows = self.db.execute("SELECT data FROM eligibility ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- meta -------------------------------------------------------------------------
    def get_meta(self, k: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return row[0] if row else default

    def set_meta(self, k: str, v: str) -> None:
        self.db.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (k, v))

    def wipe(self) -> None:
        for table in ("docs", "claims", "remittances", "eligibility"):
            self.db.execute(f"DELETE FROM {table}")   # noqa: S608 - fixed names


class _Tx:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> Store:
        self.store.lock.acquire()
        self.store.db.execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.store.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()
