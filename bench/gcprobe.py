"""Run a Python module with its garbage collections timed: ``gcprobe.py OUT.json -m MODULE ARGS``.

Installs a ``gc.callbacks`` hook that times every collection (perf_counter between
its ``start`` and ``stop`` phases) and, when the program exits normally (hopline
services do on SIGTERM), writes per generation: collections, total and max pause
in ms, the pause percentiles, and collections per second of run time; and every
collection as ``[unix time, generation, ms]`` (``events``), to tell start-up
collections from those during a measured window.
"""

from __future__ import annotations

import atexit
import gc
import json
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    """Parse ``OUT.json -m MODULE [ARGS...]``, hook the collector, run the module."""
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        print("usage: gcprobe.py OUT.json -m MODULE [ARGS...]", file=sys.stderr)
        sys.exit(2)
    out, module = Path(sys.argv[1]), sys.argv[3]
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    events: list[tuple[float, int, float]] = []  # (unix time, generation, ms)
    started = [0.0]
    t0 = time.perf_counter()

    def hook(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - started[0]) * 1000
            pauses[info["generation"]].append(ms)
            events.append((round(time.time(), 3), info["generation"], round(ms, 3)))

    def dump() -> None:
        elapsed = time.perf_counter() - t0
        summary = {"run_s": round(elapsed, 3), "threshold": gc.get_threshold()}
        for gen, ms in pauses.items():
            ms = sorted(ms)
            n = len(ms)
            summary[f"gen{gen}"] = {
                "collections": n,
                "per_s": round(n / elapsed, 3),
                "total_ms": round(sum(ms), 3),
                "p50_ms": round(ms[n // 2], 3) if n else None,
                "p99_ms": round(ms[min(n - 1, int(n * 0.99))], 3) if n else None,
                "max_ms": round(ms[-1], 3) if n else None,
            }
        summary["events"] = events
        out.write_text(json.dumps(summary, indent=2) + "\n")

    gc.callbacks.append(hook)
    atexit.register(dump)
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
