"""Defaults every component agrees on (pure constants)."""

from __future__ import annotations

__all__ = [
    "DEFAULT_GATEWAY_PORT",
    "DEFAULT_INPUT_QUEUE",
    "DEFAULT_RABBITMQ_URL",
    "DEFAULT_WS_URL",
    "INTERRUPTED_EXIT_CODE",
]

DEFAULT_RABBITMQ_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_GATEWAY_PORT = 8000
DEFAULT_WS_URL = f"ws://localhost:{DEFAULT_GATEWAY_PORT}/ws"
DEFAULT_INPUT_QUEUE = "input_queue"
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, the shell's convention
