"""/stream requests count in hopline_round_trip_seconds like /ws ones (issue 14)."""

from __future__ import annotations

import re

from tests.conftest import Stack, http_url
from tests.helpers import http_get


def round_trips(metrics: str) -> int:
    match = re.search(r"^hopline_round_trip_seconds_count (\S+)$", metrics, re.MULTILINE)
    assert match, metrics
    return int(float(match.group(1)))


async def test_stream_requests_are_recorded_in_the_round_trip_histogram(stack: Stack) -> None:
    gw = await stack.gateway()
    await stack.processor()
    before = round_trips((await http_get(http_url(gw, "/metrics"))).body.decode())
    for word in ("one", "two"):
        response = await http_get(http_url(gw, f"/stream/{word}"))
        assert response.status == 200
        assert f"{word} world" in response.body.decode()
    after = round_trips((await http_get(http_url(gw, "/metrics"))).body.decode())
    assert after - before == 2
