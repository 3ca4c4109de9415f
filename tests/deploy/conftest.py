"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hopline.wire.amqp import QueueTopology
from tests.deploy.services import LocalCompose


@pytest.fixture
async def local_compose(
    rabbitmq_url: str, topology: QueueTopology, tmp_path: Path
) -> AsyncIterator[LocalCompose]:
    """Compose services as local processes on a unique queue and a free port."""
    stack = LocalCompose(rabbitmq_url, topology.input_queue, tmp_path / "logs")
    try:
        yield stack
    finally:
        await stack.close()
