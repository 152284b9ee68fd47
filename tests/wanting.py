"""Helpers of the wants tests: events of a namespace, builds started per slice."""

from __future__ import annotations

from collections import Counter

from engine import App
from engine.router import Command

ENDED = ("satisfied", "failed", "upstream_failed", "expired", "canceled")


def events(app: App) -> list[dict[str, str]]:
    """Every event of the namespace, all partitions."""
    ks = app.client.keys
    calls = [Command(("XRANGE", ks.events(p), "-", "+"), ks.events(p)) for p in range(ks.partitions)]
    out = []
    for reply in app.client.run_many(calls):
        for _, fields in reply:
            out.append(fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True)))
    return out


def builds_started(app: App) -> Counter[str]:
    """Slice name → how many builds started for it (its moves to building)."""
    return Counter(e["slice"] for e in events(app) if e.get("slice") and e["to"] == "building")


def ended(app: App, want_id: str) -> bool:
    return app.want_status(want_id)["state"] in ENDED
