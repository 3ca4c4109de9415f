"""Characters the TUI draws with, named (escaped so linters don't take them for typos)."""

from __future__ import annotations

NONE = "\u2013"  # en dash: no value
SENT = "\u203a"  # single right angle quote: a request
RECEIVED = "\u2039"  # single left angle quote: its reply
TIMES = "\u00d7"  # multiplication sign: burst x N
