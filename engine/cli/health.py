"""The ``/healthz`` report the worker and the daemon serve (``engine/httpd.py``)."""

from __future__ import annotations

from typing import Any

from engine.client import Client
from engine.library import library


def health_report(client: Client) -> dict[str, Any]:
    """Healthy when every primary runs the library version this process would load."""
    want = library().version
    versions = client.library_status()
    return {"ok": all(v == want for v in versions.values()), "library": want, "nodes": versions}
