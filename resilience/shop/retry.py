"""The gateway's retry policy: which calls may be retried, how often, and after what backoff.

Fragile retries everything at once (zero backoff), POSTs included: a known source of
retry amplification and duplicate writes. Hardened retries only idempotent methods, with
exponential backoff and jitter: the delay before retry ``n`` (1-based) is drawn from
``[b * (1 - jitter), b]`` with ``b = min(max, base * 2^(n-1))``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""RFC 9110 §9.2.2; the shop itself only issues GET and POST."""


def is_retryable_status(status: int) -> bool:
    """An upstream answer worth another attempt: any server error."""
    return status >= 500


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries, for which methods, and the backoff between them."""

    max_retries: int
    retry_non_idempotent: bool
    backoff_base_seconds: float
    backoff_max_seconds: float
    jitter: float

    def allows(self, method: str) -> bool:
        """Whether calls with this HTTP method may be retried at all."""
        return self.retry_non_idempotent or method.upper() in IDEMPOTENT_METHODS

    def should_retry(self, method: str, retries_done: int) -> bool:
        """Whether one more retry is allowed after ``retries_done`` retries."""
        return retries_done < self.max_retries and self.allows(method)

    def backoff_bounds(self, retry_number: int) -> tuple[float, float]:
        """The closed interval the delay before retry ``retry_number`` (1-based) lies in."""
        if retry_number < 1:
            raise ValueError(f"retry_number must be >= 1, got {retry_number}")
        # min() before the power would overflow for large n; the cap makes the rest moot.
        exponent = min(retry_number - 1, 62)
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0**exponent)
        return ceiling * (1.0 - self.jitter), ceiling

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """A delay drawn uniformly from ``backoff_bounds(retry_number)``."""
        low, high = self.backoff_bounds(retry_number)
        return low + (high - low) * rng.random()
