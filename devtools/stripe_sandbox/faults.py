"""Fault injection for API calls: slow answers, 500s and dropped connections."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

MODES = ("slow", "error_before", "error_after", "drop_before", "drop_after")


@dataclass
class Rule:
    mode: str
    count: int = 1          # how many matching calls it applies to
    path: str | None = None  # only calls whose path starts with this
    method: str | None = None
    delay: float = 1.0      # seconds, for "slow"
    hits: int = 0


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[Rule] = []

    def add(self, d: dict) -> Rule:
        mode = d.get("mode")
        aliases = {"500_before": "error_before", "500_after": "error_after"}
        mode = aliases.get(mode, mode)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        unknown = set(d) - {"mode", "count", "path", "method", "delay"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        r = Rule(mode=mode, count=int(d.get("count", 1)), path=d.get("path") or None,
                 method=(d.get("method") or "").upper() or None, delay=float(d.get("delay", 1.0)))
        if r.count < 1:
            raise ValueError("count must be >= 1")
        with self.lock:
            self.rules.append(r)
        return r

    def take(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for r in self.rules:
                if r.count <= 0:
                    continue
                if r.path and not path.startswith(r.path):
                    continue
                if r.method and r.method != method:
                    continue
                r.count -= 1
                r.hits += 1
                if r.count == 0:
                    self.rules.remove(r)
                return r
        return None

    def reset(self) -> None:
        with self.lock:
            self.rules.clear()

    def describe(self) -> list[dict]:
        with self.lock:
            return [asdict(r) for r in self.rules]
