"""Tasks the integration and system tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from engine import App, PermanentError, Retry, current_task

app = App()


@app.task(name="basic.add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="basic.async_mul")
async def async_mul(a: int, b: int) -> int:
    await asyncio.sleep(0.001)
    return a * b


@app.task(name="basic.flaky", retry=Retry(max_attempts=3, backoff_s=0.05, backoff_max_s=0.1))
def flaky() -> int:
    attempt = current_task().attempt
    if attempt == 1:
        raise ConnectionError("first attempt always fails")
    return attempt


@app.task(name="basic.boom", retry=Retry(max_attempts=5))
def boom() -> None:
    raise PermanentError("this input can never work")


@app.task(name="basic.sleep")
def sleep(seconds: float) -> str:
    """Sleeps cooperatively: returns early once the execution is canceled."""
    if current_task().wait_canceled(seconds):
        return "noticed cancel"
    return "slept"


@app.task(name="basic.marker", retry=Retry(max_attempts=3, backoff_s=0))
def marker(directory: str, seconds: float) -> int:
    """Writes <pid>.started into ``directory``, sleeps, returns its pid."""
    Path(directory, f"{os.getpid()}.started").write_text(str(current_task().attempt))
    time.sleep(seconds)
    return os.getpid()


@app.task(name="basic.pid")
def pid() -> int:
    return os.getpid()


@app.task(name="basic.approval")
def approval(amount: int) -> dict[str, object]:
    """Suspends until signal "approval" comes (``wait_for``); returns its token and decision."""
    ctx = current_task()
    token = ctx.token("approval")
    decision = ctx.wait_for("approval", timeout_s=3600)
    return {"amount": amount, "decision": decision, "token": token}


# -- flow steps --------------------------------------------------------------
@app.task(name="flow.fetch")
def fetch(url: str) -> dict[str, object]:
    return {"url": url, "rows": [3, 1, 2]}


@app.task(name="flow.clean")
def clean(raw: dict[str, object]) -> list[int]:
    return sorted(raw["rows"])  # type: ignore[arg-type]


@app.task(name="flow.enrich", retry=Retry(max_attempts=1))
def enrich(raw: dict[str, object]) -> dict[str, object]:
    raise RuntimeError("the enrichment service is down")


@app.task(name="flow.report")
def report(rows: list[int], extra: dict[str, object]) -> dict[str, object]:
    return {"rows": rows, "extra": extra}


@app.task(name="flow.notify")
def notify() -> str:
    return "sent"


@app.task(name="flow.echo")
def echo(value: object) -> object:
    return value


@app.task(name="flow.spawn", retry=Retry(max_attempts=3, backoff_s=0))
def spawn(marker_dir: str) -> str:
    """Adds a dynamic step, then crashes on its first attempt (so the add is redelivered)."""
    ctx = current_task()
    ctx.add_step("spawned", "flow.echo", ctx.ref("seed"))
    if ctx.attempt == 1:
        raise ConnectionError("crash after adding the step")
    return "spawned"
