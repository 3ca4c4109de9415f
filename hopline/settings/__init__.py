"""Every user-facing setting, declared once; see :mod:`hopline.settings.spec` for the rule.

A shared library module: components (gateway, processor, tui, loadtest) and the
command import it; it imports only :mod:`hopline.wire` and click.

* :mod:`hopline.settings.spec`: :class:`Setting`, :func:`setting`, :class:`Group` and
  the environment-variable rule :func:`env_var`.
* :mod:`hopline.settings.options`: click options from settings classes, and back.
* :mod:`hopline.settings.common`: settings several components share (broker URL,
  queue topology, gateway URL, token).
* :mod:`hopline.settings.reference`: the configuration reference (a Markdown table).
"""

from __future__ import annotations

from hopline.settings.options import build, click_options, declared, environment
from hopline.settings.spec import Group, Setting, env_var, setting

__all__ = [
    "Group",
    "Setting",
    "build",
    "click_options",
    "declared",
    "env_var",
    "environment",
    "setting",
]
