"""Tasks used by ``flowslot demo``: a small sales report with the usual troubles."""

from __future__ import annotations

import asyncio
import hashlib
import time

from engine import App, PermanentError, Retry, current_task

app = App()

REGIONS = ["emea", "amer", "apac", "latam", "anz", "nordics"]


@app.task(name="demo.fetch_orders", retry=Retry(max_attempts=3, backoff_s=0.2, backoff_max_s=1))
def fetch_orders(day: str) -> dict[str, list[int]]:
    """A flaky upstream: the first attempt times out, the retry succeeds."""
    if current_task().attempt == 1:
        raise ConnectionError(f"orders API timed out for {day}")
    time.sleep(0.05)
    return {r: [int(hashlib.sha256(f"{day}{r}{i}".encode()).hexdigest(), 16) % 500 for i in range(20)]
            for r in REGIONS}


@app.task(name="demo.score_region")
async def score_region(region: str, orders: dict[str, list[int]]) -> dict[str, object]:
    """Fan-out: one async step per region."""
    await asyncio.sleep(0.05)
    values = orders[region]
    return {"region": region, "revenue": sum(values), "orders": len(values)}


@app.task(name="demo.geo_enrich", retry=Retry(max_attempts=1))
def geo_enrich(orders: dict[str, list[int]]) -> dict[str, str]:
    """An optional step whose service is down: its failure does not fail the flow."""
    raise PermanentError("geo service returned 503")


@app.task(name="demo.summarize")
def summarize(scores: list[dict[str, object]], geo: dict[str, str]) -> dict[str, object]:
    """Fan-in: receives every region's result, and the geo data or its default."""
    best = max(scores, key=lambda s: s["revenue"])  # type: ignore[arg-type, return-value]
    return {"regions": len(scores), "revenue": sum(s["revenue"] for s in scores),  # type: ignore[misc]
            "best_region": best["region"], "geo": geo or "unavailable"}


@app.task(name="demo.notify")
def notify(channel: str) -> str:
    return f"posted to {channel}"


@app.task(name="demo.thumbnail", lane="images")
def thumbnail(path: str, width: int) -> str:
    time.sleep(0.01)
    return f"{path}@{width}"
