"""Tasks used by ``flowslot demo``: realistic enough to show retries and failures."""

from __future__ import annotations

import asyncio
import hashlib
import time

from engine import App, PermanentError, Retry, current_task

app = App()


@app.task(name="demo.thumbnail", lane="images")
def thumbnail(path: str, width: int) -> dict[str, object]:
    """Pretend to resize an image: a little CPU, a little sleep."""
    digest = hashlib.sha256(f"{path}:{width}".encode()).hexdigest()[:12]
    time.sleep(0.02)
    return {"path": path, "width": width, "etag": digest}


@app.task(name="demo.fetch_price", retry=Retry(max_attempts=3, backoff_s=0.2, backoff_max_s=1))
def fetch_price(sku: str) -> float:
    """Fails its first attempt (a flaky upstream), succeeds on the retry."""
    if current_task().attempt == 1:
        raise ConnectionError(f"upstream timed out for {sku}")
    return round(9.99 + len(sku) / 10, 2)


@app.task(name="demo.score")
async def score(text: str) -> int:
    """An async handler: runs on the worker's event loop."""
    await asyncio.sleep(0.01)
    return sum(map(ord, text)) % 100


@app.task(name="demo.validate")
def validate(order_id: str) -> None:
    """Always refuses: a non-retryable failure."""
    raise PermanentError(f"order {order_id} has no shipping address")
