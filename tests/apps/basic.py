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
