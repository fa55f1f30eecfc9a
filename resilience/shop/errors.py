"""The shop's own failures, each with the HTTP status it answers with and a short error type.

The shop is a target, not part of the toolkit: its errors have their own root
(``ShopError``, an ``Exception``), so nothing of the toolkit can catch a shop failure as one
of its own, nor the other way round. The web layer turns any of them into a JSON answer
``{"error": <error_type>, "detail": <message>}`` with ``status``, and records it on the
current span (``error.type`` is the error type; a timeout is recorded as ``TimeoutError``).
"""

from __future__ import annotations


class ShopError(Exception):
    """Root of the shop's failures; ``status`` is the HTTP status of the answer."""

    status: int = 500
    default_error_type: str = "ShopError"

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        self.error_type = error_type or self.default_error_type
        super().__init__(message)


class Rejected(ShopError):
    """Refused at once to protect the service: breaker open, pool wait over, queue full."""

    status = 503
    default_error_type = "Rejected"


class DependencyTimeout(ShopError):
    """A dependency (an upstream service or the database) did not answer within its deadline."""

    status = 504
    default_error_type = "TimeoutError"


class DependencyFailed(ShopError):
    """A dependency failed: connection refused or reset, protocol error, server error."""

    status = 502
    default_error_type = "ConnectionError"


class DatabaseUnavailable(ShopError):
    """The database cannot be reached or its connection broke; the write did not happen."""

    status = 503
    default_error_type = "DatabaseUnavailable"
