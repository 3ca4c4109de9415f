"""Thresholds (``--slo``) and durations: parsing and checking (pure: no I/O).

An SLO is ``METRIC OP VALUE[UNIT]``, spaces optional:

* latency: ``p50``, ``p90``, ``p99``, ``p999``, ``max``, ``mean`` with a unit,
  ``us``, ``ms`` or ``s`` (required: ``p99<50`` is ambiguous and rejected);
* counts: ``errors`` (every request that did not end in a correct reply),
  ``timeouts`` (client timeouts plus ``timeout`` error replies), as a number or
  as a percentage of the requests sent (``errors<0.1%``);
* throughput: ``rate`` in correct replies per second (optional ``/s``).

``OP`` is one of ``<``, ``<=``, ``>``, ``>=``, ``==``. Anything else (an unknown
metric, a missing or wrong unit, a single ``=``) raises :class:`SLOError`, which the
CLI turns into a usage error: a typo never passes silently.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["SLO", "SLOError", "SLOResult", "check", "measure", "parse_duration", "parse_slo"]

LATENCY_METRICS = ("p50", "p90", "p99", "p999", "max", "mean")
COUNT_METRICS = ("errors", "timeouts")
RATE_METRICS = ("rate",)
METRICS = LATENCY_METRICS + COUNT_METRICS + RATE_METRICS

_TO_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}

_SLO_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|==|=<|=>|!=|<|>|=)\s*"
    r"(?P<value>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[A-Za-zµ%/]*)\s*$"
)
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-zµ]*)\s*$")


class SLOError(ValueError):
    """An SLO or duration that cannot be parsed; the message says what to write instead."""


@dataclass(frozen=True, slots=True)
class SLO:
    """One parsed threshold.

    Attributes:
        text: the expression as given.
        metric: one of :data:`METRICS`.
        op: one of :data:`OPERATORS`.
        threshold: in milliseconds for latency metrics, requests/s for ``rate``,
            a count or (``percent``) a percentage of requests sent for counts.
        unit: ``ms`` for latency, ``/s`` for rate, ``""`` or ``%`` for counts.
    """

    text: str
    metric: str
    op: str
    threshold: float
    unit: str

    @property
    def percent(self) -> bool:
        return self.unit == "%"


@dataclass(frozen=True, slots=True)
class SLOResult:
    """One SLO checked against a run; ``actual`` is ``None`` when there was nothing to measure."""

    slo: SLO
    actual: float | None
    passed: bool

    def describe(self) -> str:
        """``p99 = 612.3 ms, required < 500 ms`` (units as the SLO uses them)."""
        if self.actual is None:
            actual = "not measured (no replies)"
        else:
            actual = measure(self.actual, self.slo.unit)
        required = f"{self.slo.op} {measure(self.slo.threshold, self.slo.unit)}"
        return f"{self.slo.metric} = {actual}, required {required}"


UNIT_SUFFIX = {"ms": " ms", "/s": " req/s", "%": "%", "": ""}


def measure(value: float, unit: str) -> str:
    """``value`` with its unit as a user reads it: ``9.983 ms``, ``500 req/s``, ``0.1%``."""
    return f"{_fmt(value)}{UNIT_SUFFIX[unit]}"


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def parse_slo(text: str) -> SLO:
    """Parse one ``--slo`` expression.

    Raises:
        SLOError: unknown metric, operator or unit, or a unit missing where required.
    """
    match = _SLO_RE.match(text)
    if match is None:
        raise SLOError(
            f"cannot parse SLO {text!r}: expected METRIC OP VALUE[UNIT], e.g. 'p99<50ms', "
            "'errors==0', 'rate>=1000'"
        )
    metric = match["metric"].lower()
    op, value, unit = match["op"], float(match["value"]), match["unit"].lower()
    if metric not in METRICS:
        hint = difflib.get_close_matches(metric, METRICS, n=1)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        raise SLOError(
            f"unknown SLO metric {match['metric']!r} in {text!r}: {suggestion}"
            f"known metrics: {', '.join(METRICS)}"
        )
    if op not in OPERATORS:
        fixed = {"=": "==", "=<": "<=", "=>": ">="}.get(op)
        hint = f"did you mean {fixed!r}? " if fixed else ""
        raise SLOError(f"unknown operator {op!r} in SLO {text!r}: {hint}use <, <=, >, >= or ==")
    if metric in LATENCY_METRICS:
        if not unit:
            raise SLOError(f"SLO {text!r} needs a unit: {metric}<{match['value']}ms or ...s")
        if unit not in _TO_MS:
            raise SLOError(f"unknown latency unit {unit!r} in SLO {text!r}: use us, ms or s")
        return SLO(text, metric, op, value * _TO_MS[unit], "ms")
    if metric in COUNT_METRICS:
        if unit not in ("", "%"):
            raise SLOError(
                f"{metric} is a count: write e.g. '{metric}==0' or '{metric}<1%', not {unit!r}"
            )
        return SLO(text, metric, op, value, unit)
    if unit not in ("", "/s", "rps"):
        raise SLOError(f"rate is in requests/s: write e.g. 'rate>=1000', not unit {unit!r}")
    return SLO(text, metric, op, value, "/s")


def check(slos: list[SLO], metrics: Mapping[str, float | None]) -> list[SLOResult]:
    """Check every SLO against the measured ``metrics``.

    ``metrics`` holds every name of :data:`METRICS` (latencies in ms, ``None`` when
    there were no replies) plus ``sent``. A latency SLO with nothing measured fails.
    """
    results = []
    sent = metrics.get("sent") or 0
    for slo in slos:
        actual = metrics.get(slo.metric)
        if actual is not None and slo.percent:
            actual = 100.0 * actual / sent if sent else 0.0
        passed = actual is not None and OPERATORS[slo.op](actual, slo.threshold)
        results.append(SLOResult(slo, actual, passed))
    return results


def parse_duration(text: str) -> float:
    """Seconds from ``'10s'``, ``'500ms'``, ``'2m'``, ``'1h'`` or a bare number of seconds.

    Raises:
        SLOError: not a non-negative number with one of the units us, ms, s, m, h.
    """
    match = _DURATION_RE.match(str(text))
    if match is None:
        raise SLOError(f"cannot parse duration {text!r}: write e.g. 10s, 500ms, 2m")
    value, unit = float(match[1]), match[2].lower()
    if unit and unit not in _DURATION_UNITS:
        raise SLOError(f"unknown unit {unit!r} in duration {text!r}: use us, ms, s, m or h")
    return value * _DURATION_UNITS.get(unit, 1.0)
