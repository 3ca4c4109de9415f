"""What one worker counted: outcomes, error codes, latencies and ledger rows (pure).

The worker reports every request's end here; :meth:`Tally.interval` returns what
changed since the previous call (counter deltas, codes, an encoded latency
histogram), which is what a worker ships once a second. Ledger rows (CSV or JSONL,
one per request) accumulate until :meth:`Tally.take_rows`.
"""

from __future__ import annotations

import json
from typing import Any

from loadtest.schedule import NS
from loadtest.stats import COUNTER_NAMES, Outcome, Recorder

__all__ = ["LEDGER_CSV_HEADER", "Tally"]

LEDGER_CSV_HEADER = "worker,conn,seq,start_s,latency_ms,outcome,code\n"


class Tally:
    """Counters of one worker.

    Args:
        worker: the worker's number (in ledger rows).
        load_ns: when the load started (ledger start times are relative to it).
        ledger_format: ``csv``, ``jsonl``, or None for no ledger rows.
    """

    def __init__(self, worker: int, load_ns: int, ledger_format: str | None = None) -> None:
        self.worker = worker
        self.load_ns = load_ns
        self.ledger_format = ledger_format
        self.recorder = Recorder()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.codes: dict[str, int] = {}
        self.rows: list[str] = []
        self._reported: dict[str, int] = dict(self.counters)
        self._reported_codes: dict[str, int] = {}

    def count(self, name: str, amount: int = 1) -> None:
        """Add to one of :data:`~loadtest.stats.COUNTER_NAMES` (``sent``, ``late``, ...)."""
        self.counters[name] += amount

    def replied(
        self, conn: int, seq: int, start_ns: int, now_ns: int, outcome: Outcome, code: str | None
    ) -> None:
        """Request ``seq`` of connection ``conn`` got a reply (ok, mismatch or error)."""
        latency = (now_ns - start_ns) // 1000
        self.recorder.record(latency)
        self.counters[outcome] += 1
        if code is not None:
            self.codes[code] = self.codes.get(code, 0) + 1
        if self.ledger_format is not None:
            self._row(conn, seq, start_ns, latency, outcome, code)

    def unresolved(self, conn: int, seq: int, start_ns: int, outcome: Outcome) -> None:
        """Request ``seq`` of connection ``conn`` timed out or lost its connection."""
        self.counters[outcome] += 1
        if self.ledger_format is not None:
            self._row(conn, seq, start_ns, None, outcome, None)

    def interval(self) -> dict[str, Any]:
        """Counter and code deltas and the latency histogram since the previous call."""
        c, prev = self.counters, self._reported
        deltas = {name: c[name] - prev[name] for name in COUNTER_NAMES}
        self._reported = dict(c)
        codes = {k: v - self._reported_codes.get(k, 0) for k, v in self.codes.items()}
        self._reported_codes = dict(self.codes)
        return {
            "counters": deltas,
            "codes": {k: v for k, v in codes.items() if v},
            "hist": self.recorder.take(),
        }

    def take_rows(self) -> str:
        """The ledger rows gathered so far (emptied)."""
        rows = "".join(self.rows)
        self.rows.clear()
        return rows

    def _row(
        self,
        conn: int,
        seq: int,
        start_ns: int,
        latency_us: int | None,
        outcome: Outcome,
        code: str | None,
    ) -> None:
        at = (start_ns - self.load_ns) / NS
        lat = "" if latency_us is None else f"{latency_us / 1000:.3f}"
        w = self.worker
        if self.ledger_format == "csv":
            self.rows.append(f"{w},{conn},{seq},{at:.6f},{lat},{outcome},{code or ''}\n")
        else:
            self.rows.append(
                f'{{"worker":{w},"conn":{conn},"seq":{seq},"start_s":{at:.6f},'
                f'"latency_ms":{lat or "null"},"outcome":"{outcome}",'
                f'"code":{_json_str(code)}}}\n'
            )


def _json_str(value: str | None) -> str:
    return "null" if value is None else json.dumps(value)
