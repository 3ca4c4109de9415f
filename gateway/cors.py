"""What a browser may do with the gateway: methods, the origin policy and CORS (pure: no I/O).

Contracts:

* **Methods.** Every route answers ``GET``; the plain HTTP routes also ``HEAD`` (the
  same status and headers, no body: ``HEAD /stream/...`` publishes nothing) and
  ``OPTIONS`` (``204`` with ``Allow``, and the CORS preflight headers when it is a
  preflight from an allowed origin). Any other method gets ``405`` with ``Allow``;
  nothing runs.
* **Origin policy** (:func:`origin_refusal`), applied before anything is published on
  every route that runs a request (``/ws``, ``/stream``): with an allow-list, a
  request is refused when its ``Origin`` is not listed, when it carries several
  ``Origin`` headers, or when it has no ``Origin`` but the browser marks it
  ``Sec-Fetch-Site: cross-site`` or ``same-site`` (what Chromium sends for a
  ``no-cors`` fetch or an image of another site). Without an allow-list every page
  may use the gateway, as before.
* **CORS** (:func:`cors_headers`): the routes a page may read (``/stream``,
  ``/health``, ``/stats``) answer an allowed origin with
  ``Access-Control-Allow-Origin: <that origin>``; other origins get no CORS header,
  so their pages cannot read the response. ``Vary: Origin`` is always sent on those
  routes. No credentials (cookies) are involved: authentication is by token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.security import header_values, origin_allowed

__all__ = [
    "CORS_ROUTES",
    "PREFLIGHT_MAX_AGE",
    "allowed_methods",
    "cors_headers",
    "is_preflight",
    "origin_refusal",
    "preflight_headers",
    "request_origin",
]

# Routes whose responses a page on an allowed origin may read.
CORS_ROUTES = ("/stream/", "/health", "/stats")
# Request headers a page may send cross-origin: a bearer token (fetch), the reconnect
# header of EventSource, and what fetch() adds when asked for an event stream.
PREFLIGHT_ALLOW_HEADERS = "Authorization, Last-Event-ID, Accept, Cache-Control"
PREFLIGHT_MAX_AGE = 600
# Fetch metadata values that say "another site made this request".
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods ``path`` answers: ``/ws`` only upgrades with GET; the rest add HEAD."""
    if path == "/ws":
        return ("GET", "OPTIONS")
    return ("GET", "HEAD", "OPTIONS")


def is_cors_route(path: str) -> bool:
    """Whether a page on an allowed origin may read ``path``'s responses."""
    return path.startswith(CORS_ROUTES[0]) or path in CORS_ROUTES[1:]


def request_origin(headers: Mapping[str, str] | Any) -> str | None:
    """The single ``Origin`` header of a request, or None (none, or several)."""
    origins = header_values(headers, "Origin")
    return origins[0] if len(origins) == 1 else None


def origin_refusal(headers: Mapping[str, str] | Any, allowed: frozenset[str]) -> str | None:
    """Why the origin policy refuses a request that would run something, or None.

    See the module docstring. The reason is safe to log and to show the client.
    """
    origins = header_values(headers, "Origin")
    if len(origins) > 1:
        return "several Origin headers"
    if not allowed:
        return None
    if origins:
        return None if origin_allowed(origins[0], allowed) else "origin not allowed"
    sites = {value.strip().lower() for value in header_values(headers, "Sec-Fetch-Site")}
    if sites & _FOREIGN_SITES:
        return "cross-site request without an allowed Origin"
    return None


def is_preflight(method: str, headers: Mapping[str, str] | Any) -> bool:
    """Whether this is a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``)."""
    return method == "OPTIONS" and bool(header_values(headers, "Access-Control-Request-Method"))


def cors_headers(
    path: str, headers: Mapping[str, str] | Any, allowed: frozenset[str]
) -> dict[str, str]:
    """CORS response headers for a response to this request (empty when none apply).

    ``Vary: Origin`` on every readable route; ``Access-Control-Allow-Origin`` only
    when the request's single ``Origin`` is allowed (any origin when the allow-list is
    empty, like the WebSocket). ``Access-Control-Expose-Headers`` lets a page read
    ``Retry-After`` and ``WWW-Authenticate`` of a refusal.
    """
    if not is_cors_route(path):
        return {}
    result = {"Vary": "Origin"}
    origin = request_origin(headers)
    if origin is not None and origin_allowed(origin, allowed):
        result["Access-Control-Allow-Origin"] = origin
        result["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"
    return result


def preflight_headers(
    path: str, headers: Mapping[str, str] | Any, allowed: frozenset[str]
) -> dict[str, str]:
    """Headers of the ``204`` answering a preflight: CORS grants only for an allowed origin."""
    result = {"Allow": ", ".join(allowed_methods(path)), **cors_headers(path, headers, allowed)}
    if "Access-Control-Allow-Origin" in result:
        result["Access-Control-Allow-Methods"] = "GET, HEAD"
        result["Access-Control-Allow-Headers"] = PREFLIGHT_ALLOW_HEADERS
        result["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return result
