"""Real worker processes for tests: ``flowslot worker tests.apps.basic:app``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, url: str, namespace: str, partitions: int, *, lanes: str = "default",
                 lease_ms: int = 2000, grace_s: float = 5.0, concurrency: int = 4,
                 metrics_port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", "tests.apps.basic:app", "--url", url,
             "--namespace", namespace, "--partitions", str(partitions), "--lanes", lanes,
             "--lease-ms", str(lease_ms), "--grace-s", str(grace_s),
             "--concurrency", str(concurrency), "--metrics-port", str(metrics_port)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def output(self) -> str:
        if self.proc.poll() is None:
            self.kill()
        return self.proc.stdout.read() if self.proc.stdout else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
