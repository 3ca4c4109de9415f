"""Queue statistics from the RabbitMQ management HTTP API (``GET /api/queues/{vhost}/{name}``).

Passive AMQP declares give ready messages and consumers but not unacknowledged
ones; the management plugin reports all three (refreshed by the broker every
``collect_statistics_interval``, 5 s by default). :func:`fetch_queues` asks for
several queues at once, bounded by one timeout, and raises
:class:`ManagementError` for anything that keeps it from answering, so the
caller can fall back to AMQP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from hopline.wire.addresses import vhost_of

__all__ = [
    "DEFAULT_TIMEOUT",
    "ManagementError",
    "QueueSample",
    "credentials",
    "fetch_queues",
    "queue_url",
]

DEFAULT_TIMEOUT = 2.0


class ManagementError(Exception):
    """The management API could not answer (unreachable, refused, timeout, bad answer)."""


@dataclass(frozen=True, slots=True)
class QueueSample:
    """Depth of one queue at one moment; ``unacked`` is None when the source can't tell.

    ``type`` (classic, quorum) and ``leader`` (the node holding the queue, or its
    quorum leader) come from the management API only.
    """

    name: str
    ready: int
    consumers: int
    unacked: int | None = None
    type: str | None = None
    leader: str | None = None


def _first(urls: str) -> str:
    """The first address of a comma-separated list (every node has the same vhosts, users)."""
    return urls.split(",")[0].strip()


def credentials(management_url: str, amqp_url: str) -> tuple[str, str]:
    """User and password: from the management URL if it has them, else from the AMQP URL."""
    for url in (_first(management_url), _first(amqp_url)):
        parts = urlsplit(url)
        if parts.username is not None:
            return unquote(parts.username), unquote(parts.password or "")
    return "guest", "guest"


def queue_url(management_url: str, vhost: str, name: str) -> str:
    """``{base}/api/queues/{vhost}/{name}`` without credentials, path segments encoded."""
    parts = urlsplit(management_url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = f"{parts.path.rstrip('/')}/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _get(url: str, auth: str, timeout: float) -> Any:
    request = urllib.request.Request(
        url, headers={"Authorization": auth, "Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        raise ManagementError(f"HTTP {exc.code} from {url}") from None
    except (OSError, ValueError) as exc:
        raise ManagementError(f"{url}: {exc}") from None


def _parse(name: str, doc: Any) -> QueueSample:
    if not isinstance(doc, dict):
        raise ManagementError(f"unexpected answer for queue {name!r}")
    unacked = doc.get("messages_unacknowledged")
    return QueueSample(
        name=name,
        ready=int(doc.get("messages_ready") or 0),
        unacked=int(unacked) if isinstance(unacked, int) else None,
        consumers=int(doc.get("consumers") or 0),
        type=str(doc["type"]) if doc.get("type") else None,
        leader=str(doc.get("leader") or doc.get("node") or "") or None,
    )


async def fetch_queues(
    management_url: str,
    amqp_url: str,
    names: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
) -> list[QueueSample]:
    """Fetch the statistics of ``names`` (in that order), concurrently, within ``timeout``.

    ``management_url`` and ``amqp_url`` may be comma-separated lists (the nodes of a
    cluster): the nodes' management APIs are asked in turn until one answers, each
    within ``timeout``. Credentials come from the management URL if it has any,
    else from the AMQP URL; the vhost is the one of ``amqp_url``. Blocking HTTP runs
    in worker threads, each bounded by ``timeout`` too, so none outlives the call by much.

    Raises:
        ManagementError: no node's API returned every queue in time (the last reason).
    """
    error = ManagementError("no management URL")
    for base in [u.strip() for u in management_url.split(",") if u.strip()]:
        try:
            return await _fetch_from(base, amqp_url, names, timeout)
        except ManagementError as exc:
            error = exc
    raise error


async def _fetch_from(
    management_url: str, amqp_url: str, names: Sequence[str], timeout: float
) -> list[QueueSample]:
    user, password = credentials(management_url, amqp_url)
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    vhost = vhost_of(amqp_url)
    urls = [queue_url(management_url, vhost, name) for name in names]
    try:
        async with asyncio.timeout(timeout):
            docs = await asyncio.gather(
                *(asyncio.to_thread(_get, url, auth, timeout) for url in urls)
            )
    except TimeoutError:
        raise ManagementError(f"no answer from the management API within {timeout:g} s") from None
    return [_parse(name, doc) for name, doc in zip(names, docs, strict=True)]
