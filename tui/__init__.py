"""``hopline tui``: a Textual chat with live queue depths and round-trip latency."""
