"""Real worker processes for tests: ``flowslot worker tests.apps.basic:app``.

A ``WorkerProcess`` returns only once the worker has logged that it started
(its threads run and its start-up sweep is done), and a thread reads its
output all the time, so a chatty worker never blocks on a full pipe; the
lines are kept for failure messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerDidNotStart(AssertionError):
    """The worker exited, or logged no start line in time; the message carries its output."""


class WorkerProcess:
    def __init__(self, url: str, namespace: str, partitions: int, *, lanes: str = "default",
                 lease_ms: int = 2000, grace_s: float = 5.0, concurrency: int = 4,
                 metrics_port: int = 0, target: str = "tests.apps.basic:app",
                 ready_timeout_s: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", target, "--url", url,
             "--namespace", namespace, "--partitions", str(partitions), "--lanes", lanes,
             "--lease-ms", str(lease_ms), "--grace-s", str(grace_s),
             "--concurrency", str(concurrency), "--metrics-port", str(metrics_port)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # PYTHONFAULTHANDLER: a worker that does not stop is sent SIGABRT, which dumps
            # every thread's stack into the output that the failure message carries.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
        )
        self.lines: list[str] = []
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"worker-{self.proc.pid}-output", daemon=True)
        self._reader.start()
        self._wait_started(ready_timeout_s)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "worker" in line and "started" in line:
                self._started.set()

    def _wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._started.wait(0.05):
            if self.proc.poll() is not None:
                self.stop()  # reads the last lines, which say why
                raise WorkerDidNotStart(f"worker exited with {self.proc.returncode} before it started:\n"
                                        + "\n".join(self.lines))
            if time.monotonic() > deadline:
                self.stop()
                raise WorkerDidNotStart(f"worker logged no start line in {timeout_s}s:\n"
                                        + "\n".join(self.lines))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and the exit code; a worker still running after ``timeout_s`` fails the
        test with its output and a dump of its threads."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            raise AssertionError(f"worker did not exit {timeout_s}s after SIGTERM:\n{self.output()}") from None

    def output(self) -> str:
        """Everything the worker printed; kills it first if it still runs."""
        if self.proc.poll() is None:
            self.kill()
        self._reader.join(timeout=10)
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._reader.join(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
