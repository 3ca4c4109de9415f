"""Reconnection delays: exponential backoff with jitter and a cap (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays before successive reconnection attempts.

    The n-th delay (n from 1) is ``initial * factor**(n-1)``, capped at ``maximum``,
    then spread by ``±jitter`` (a fraction) so many clients don't return in step.
    :meth:`reset` after a successful connection starts over.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 10.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        """Count one more failed attempt and return how long to wait before the next."""
        self.attempt += 1
        base = min(self.maximum, self.initial * self.factor ** (self.attempt - 1))
        spread = base * self.jitter * (2 * self.rng() - 1)
        return max(0.0, min(self.maximum, base + spread))

    def reset(self) -> None:
        """Forget the failures (call once connected)."""
        self.attempt = 0
