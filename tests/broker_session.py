"""The test session's RabbitMQ broker (a pytest plugin; tests/conftest.py uses its hooks).

* ``RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``) is used when an
  AMQP broker answers there (``.ci/run`` starts the machine's broker first).
* Otherwise, when ``rabbitmq-server`` is installed, a private node is started for the
  session, as ``hopline up`` does (:class:`hopline.broker_node.PrivateBroker`), and
  ``RABBITMQ_URL`` points every test, and every command a test runs, at it. It is
  stopped and its data directory removed when the session ends.
* With neither, the session stops at once with one line saying how to get a broker.
"""

from __future__ import annotations

import os

import pytest
from yarl import URL

from hopline.broker_node import PrivateBroker, amqp_answers, rabbitmq_server_path

__all__ = ["DEFAULT_URL", "pytest_sessionfinish", "pytest_sessionstart", "session_url"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
NO_BROKER = (
    "no RabbitMQ answers at {url} and rabbitmq-server is not installed: install it "
    "('apt-get install rabbitmq-server'; the tests then start a private node), start one "
    "('docker compose up -d rabbitmq'), or set RABBITMQ_URL"
)

_node: PrivateBroker | None = None


def session_url() -> str:
    """The broker URL every test uses (after :func:`pytest_sessionstart`)."""
    return os.environ.get("RABBITMQ_URL", DEFAULT_URL)


def _answers(url: str) -> bool:
    parsed = URL(url)
    if parsed.scheme == "amqps":
        return True  # not probed: the TLS handshake is the library's job
    return amqp_answers(parsed.host or "127.0.0.1", parsed.port or 5672, timeout=2.0)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Find or start the session's broker; stop the session with one line if neither."""
    global _node
    url = session_url()
    if _answers(url):
        return
    shown = str(URL(url).with_password("***")) if URL(url).password else url
    if rabbitmq_server_path() is None:
        raise pytest.UsageError(NO_BROKER.format(url=shown))
    node = PrivateBroker()
    try:
        node.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        node.cleanup()
        raise pytest.UsageError(
            f"no RabbitMQ answers at {shown} and a private node did not start: {exc}"
        ) from None
    _node = node
    os.environ["RABBITMQ_URL"] = node.url
    print(f"\nno RabbitMQ at {shown}: the tests use a private node at {node.url}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the private node, if the session started one, and remove its data."""
    global _node
    if _node is not None:
        _node.cleanup()
        _node = None
