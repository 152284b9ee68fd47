"""Retry policy: how many attempts, how long to back off, which errors to retry."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ContractError


class PermanentError(Exception):
    """Raise from a handler to fail the execution without retrying it."""


@dataclass(frozen=True)
class Retry:
    """Exponential back-off with jitter: ``backoff_s * 2**(attempt-1)``, capped, halved-to-full.

    ``dont_retry_on`` lists exception types that fail the execution at once;
    ``PermanentError`` always does.
    """

    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    dont_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if (not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool)
                or not 1 <= self.max_attempts <= 1000):
            raise ContractError(f"Retry.max_attempts must be an integer in 1..1000, got {self.max_attempts!r}")
        for name in ("backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1e7:
                raise ContractError(f"Retry.{name} must be a number of seconds in 0..1e7, got {value!r}")
        if self.backoff_max_s < self.backoff_s:
            raise ContractError("Retry.backoff_max_s must be at least backoff_s")
        kinds = self.dont_retry_on
        if not isinstance(kinds, tuple) or not all(
            isinstance(k, type) and issubclass(k, BaseException) for k in kinds
        ):
            raise ContractError(f"Retry.dont_retry_on must be a tuple of exception classes, got {kinds!r}")

    def retryable(self, error: BaseException) -> bool:
        if isinstance(error, PermanentError):
            return False
        return not (self.dont_retry_on and isinstance(error, self.dont_retry_on))


NO_RETRY = Retry(max_attempts=1, backoff_s=0, backoff_max_s=0)
