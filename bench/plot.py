"""Redraw the sweep plot from a results JSON: ``python bench/plot.py RESULTS.json OUT.svg``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from run import write_plot


def main() -> None:
    """Read the JSON ``bench/run.py --json`` wrote; write the SVG ``--plot`` would have."""
    if len(sys.argv) != 3:
        print("usage: bench/plot.py RESULTS.json OUT.svg", file=sys.stderr)
        sys.exit(2)
    out = json.loads(Path(sys.argv[1]).read_text())
    if "sweep" not in out and "workers" not in out:
        print(f"error: {sys.argv[1]} has no sweep results", file=sys.stderr)
        sys.exit(1)
    write_plot(out, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
