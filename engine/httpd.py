"""A tiny HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz`` (cluster + library)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.metrics import REGISTRY


def serve(port: int, health: Callable[[], dict[str, Any]], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving in a daemon thread; ``health()`` returns a dict with an ``ok`` key."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.startswith("/metrics"):
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            elif self.path.startswith("/healthz"):
                try:
                    report = health()
                except Exception as e:  # noqa: BLE001 - any failure is "unhealthy", reported
                    report = {"ok": False, "error": str(e)}
                self._send(200 if report.get("ok") else 503, "application/json",
                           json.dumps(report).encode())
            else:
                self._send(404, "text/plain", b"try /metrics or /healthz\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="flowslot-httpd", daemon=True).start()
    return server
