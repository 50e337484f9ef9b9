"""Bounded exponential backoff with full jitter (AWS architecture blog's "Full Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Sleep before attempt ``attempt + 1`` (attempt counts from 1): uniform(0, min(cap, base * 2**(attempt-1)))."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)
