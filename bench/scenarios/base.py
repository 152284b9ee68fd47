"""What a scenario is: a name, a one-line summary, a run function, extra options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from bench.params import Params
from bench.server import Progress, Target

Result = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A benchmark.

    ``run`` returns one JSON-ready dict. By convention every measured system
    (``flowslot``, ``baseline``, ...) is a sub-dict holding at least
    ``ops_per_s`` and ``completed``; ``notes`` is a list of caveats to print.
    ``options`` are extra click options, passed in ``Params.extra``.
    ``worker_counts``, when set, lets ``--workers`` take a comma-separated list (its default):
    the scenario reads it from ``Params.extra["worker_counts"]``.
    """

    name: str
    summary: str
    run: Callable[[Params, Target, Progress], Result]
    options: tuple[click.Option, ...] = ()
    worker_counts: str | None = None
