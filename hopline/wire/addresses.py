"""Broker addresses: parse and check a list of AMQP URLs, redact passwords (no aio-pika).

Light on purpose: the command line checks ``--rabbitmq-url`` with it at parse time.
Re-exported by :mod:`hopline.wire.connect`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import unquote, urlsplit

from yarl import URL

__all__ = ["AMQP_SCHEMES", "parse_amqp_urls", "primary_url", "redact_url", "vhost_of"]

AMQP_SCHEMES = ("amqp", "amqps")


def redact_url(url: str) -> str:
    """``url`` (or a comma-separated list) with passwords replaced by ``***``, for logs."""
    if "," in url:
        return ",".join(redact_url(part) for part in url.split(","))
    try:
        parsed = URL(url.strip())
    except ValueError:
        return "<invalid url>"
    if parsed.password:
        parsed = parsed.with_password("***")
    return str(parsed)


def parse_amqp_urls(values: str | Iterable[str]) -> list[str]:
    """Split and check broker addresses: each value may itself be a comma-separated list.

    Returns the URLs in the order given, without blanks or duplicates.

    Raises:
        ValueError: no address, or one is not ``amqp[s]://[user[:password]@]host[:port][/vhost]``
            (one line, password redacted).
    """
    items = [values] if isinstance(values, str) else list(values)
    urls: list[str] = []
    for item in items:
        for raw in str(item).split(","):
            text = raw.strip()
            if not text:
                continue
            _check_url(text)
            if text not in urls:
                urls.append(text)
    if not urls:
        raise ValueError("no RabbitMQ address given (expected amqp://user:password@host:port/)")
    return urls


def _check_url(text: str) -> None:
    shown = redact_url(text) if "://" in text else text
    hint = "expected amqp://user:password@host:port/vhost"
    try:
        url = URL(text)
        port = url.port
    except ValueError:
        raise ValueError(f"not an AMQP URL: {shown!r} ({hint})") from None
    if url.scheme not in AMQP_SCHEMES:
        raise ValueError(f"not an AMQP URL: {shown!r} (scheme must be amqp or amqps; {hint})")
    if not url.host:
        raise ValueError(f"not an AMQP URL: {shown!r} (no host; {hint})")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"not an AMQP URL: {shown!r} (bad port; {hint})")
    for key in ("heartbeat", "connection_timeout"):
        value = url.query.get(key)
        if value is not None and not value.isdigit():
            raise ValueError(f"not an AMQP URL: {shown!r} ({key} must be a whole number)")


def primary_url(urls: str | Sequence[str]) -> str:
    """The first address of a list (credentials and vhost are the same on every node)."""
    return parse_amqp_urls(urls)[0]


def vhost_of(amqp_url: str) -> str:
    """The virtual host of an AMQP URL (the first of a comma-separated list).

    ``amqp://h/`` and ``amqp://h`` mean ``/``; ``%2F`` is decoded.
    """
    path = urlsplit(amqp_url.split(",")[0].strip()).path
    return unquote(path[1:]) if len(path) > 1 else "/"
