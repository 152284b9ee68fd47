"""A task that prints a lot, for the test that a worker's output never fills its pipe."""

from __future__ import annotations

from engine import App

app = App()


@app.task(name="chatty.shout")
def shout(kib: int) -> int:
    """Prints ``kib`` KiB to stdout (more than a pipe holds when nobody reads it)."""
    line = "x" * 1023
    for _ in range(kib):
        print(line, flush=True)
    return kib
