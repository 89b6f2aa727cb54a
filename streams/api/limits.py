"""Per-key rate limits of the till API: a token bucket per key, in this process.

Each key may make ``rate_requests_per_s`` requests a second on average and
``burst_requests`` at once; a request past that is refused with the seconds
until a token is back (the 429's ``Retry-After``). Time is the monotonic
clock of this process (a limit on traffic, not a ledger rule). Several API
processes each allow the rate: divide it by their number if it must hold in
total.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    def __init__(self, rate_requests_per_s: int, burst_requests: int,
                 clock_s: Callable[[], float] = time.monotonic) -> None:
        self.rate_requests_per_s = rate_requests_per_s
        self.burst_requests = burst_requests
        self._clock_s = clock_s
        self._buckets: dict[str, Bucket] = {}

    def retry_after_s(self, key_id: str) -> int:
        """0 when the request may go (a token is taken), else whole seconds to wait."""
        now = self._clock_s()
        bucket = self._buckets.setdefault(key_id, Bucket(float(self.burst_requests), now))
        refill = (now - bucket.updated_s) * self.rate_requests_per_s
        bucket.tokens = min(float(self.burst_requests), bucket.tokens + refill)
        bucket.updated_s = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.rate_requests_per_s))
