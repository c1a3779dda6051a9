"""The Tidings exception tree.

Every error a client can cause maps to one class here, and each class carries the
HTTP status and a stable machine-readable code, so the API layer never guesses::

    TidingsError                     (400 bad_request)
    ├── InvalidInput                 (400 invalid_input)
    ├── Unauthorized                 (401 unauthorized)
    ├── Forbidden                    (403 forbidden)
    ├── NotFound                     (404 not_found)
    ├── Conflict                     (409 conflict)
    │   └── MismatchedDevices        (409 mismatched_devices)
    ├── StaleDevices                 (410 stale_devices)
    ├── PayloadTooLarge              (413 payload_too_large)
    ├── LimitExceeded                (422 limit_exceeded)
    ├── RateLimited                  (429 rate_limited)
    └── Unavailable                  (503 unavailable, retryable)

Engines translate driver exceptions into ``Unavailable`` (``raise ... from exc``);
whether a caller may retry is ``error.retryable``.
"""

from __future__ import annotations

from typing import Any


class TidingsError(Exception):
    """Base of every error Tidings raises on purpose."""

    status: int = 400
    code: str = "bad_request"
    retryable: bool = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` member of a response; ``details`` is ``{}`` when there are none,
        so clients never test for its presence."""
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(TidingsError):
    status = 400
    code = "invalid_input"


class Unauthorized(TidingsError):
    status = 401
    code = "unauthorized"


class Forbidden(TidingsError):
    status = 403
    code = "forbidden"


class NotFound(TidingsError):
    status = 404
    code = "not_found"


class Conflict(TidingsError):
    status = 409
    code = "conflict"


class MismatchedDevices(Conflict):
    """The sender's device list for a recipient is missing devices or names extra ones."""

    code = "mismatched_devices"


class IdReused(Conflict):
    """A client id that already named a message to someone else."""

    code = "id_reused"


class StaleDevices(TidingsError):
    """The sender encrypted for a device that has since been re-registered."""

    status = 410
    code = "stale_devices"


class PayloadTooLarge(TidingsError):
    status = 413
    code = "payload_too_large"


class LimitExceeded(TidingsError):
    """A count limit (devices, prekeys, group members) would be exceeded."""

    status = 422
    code = "limit_exceeded"


class RateLimited(TidingsError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after": round(retry_after, 3)})
        self.retry_after = retry_after


class Unavailable(TidingsError):
    """A backing engine is down or timed out; the same request may succeed later."""

    status = 503
    code = "unavailable"
    retryable = True
