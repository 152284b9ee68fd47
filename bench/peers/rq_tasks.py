"""The functions RQ workers run (``rq worker`` imports them by dotted name).

RQ passes no result along ``depends_on``; its docs have a dependent read its
dependencies through the current job: ``get_current_job().dependency`` (the
first) or ``fetch_dependencies()`` (all), then ``return_value()``.
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job


def noop(pad: str = "") -> None:
    return None


def step(n: int, pad: str = "", by: int = 1) -> int:
    return n + by


def _dependency_values() -> list[Any]:
    job = get_current_job()
    assert job is not None
    return [d.return_value() for d in job.fetch_dependencies()]


def next_step(pad: str = "", by: int = 1) -> int:
    """A chain link or a fan-out middle: its one dependency's result plus ``by``."""
    job = get_current_job()
    assert job is not None and job.dependency is not None
    value = job.dependency.return_value()
    assert isinstance(value, int)
    return value + by


def total(pad: str = "") -> int:
    """A fan-in: the sum of every dependency's result."""
    return sum(_dependency_values())


def fail(pad: str = "") -> None:
    raise ValueError("fails on purpose")
