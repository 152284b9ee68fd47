"""The task the ``steady`` scenario's worker processes run (``flowslot worker`` imports it)."""

from __future__ import annotations

import time

from engine import App

app = App()


@app.task(name="bench.steady")
def steady(work_ms: int) -> int:
    time.sleep(work_ms / 1000)
    return work_ms
