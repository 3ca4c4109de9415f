"""compose.yaml runs the RabbitMQ version the test suite runs against (issue 14).

Everything here is tested on the broker the tests use (RabbitMQ 3.10 on this project's
machines); an image of another major/minor version would ship untested defaults (4.x:
quorum queues drop a message after 20 deliveries). Changing one means changing both.
"""

from __future__ import annotations

import aio_pika

from tests.deploy.test_compose import SERVICES


async def test_compose_rabbitmq_image_is_the_version_the_tests_run_against(
    rabbitmq_url: str,
) -> None:
    conn = await aio_pika.connect(rabbitmq_url)
    async with conn:
        properties = conn.transport.connection.server_properties
    tested = ".".join(properties["version"].split(".")[:2])
    tag = SERVICES["rabbitmq"]["image"].partition(":")[2]
    assert tag == f"{tested}-management", f"compose runs {tag}, the tests run {tested}"
