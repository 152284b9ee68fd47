"""What every scenario is asked to do: sizes, limits, and scenario-specific extras."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError


class BenchError(EngineError):
    """A benchmark could not run to the end (a worker died, a deadline passed)."""


@dataclass(frozen=True)
class Params:
    """Sizes shared by every scenario; ``extra`` holds a scenario's own options."""

    tasks: int = 10_000
    workers: int = 4
    concurrency: int = 16
    payload_bytes: int = 100
    partitions: int = 256
    chunk: int = 500
    timeout_s: float = 300.0
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> str:
        """The argument every task receives: ``payload_bytes`` ASCII characters."""
        return "x" * self.payload_bytes
