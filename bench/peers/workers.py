"""Peer worker processes, started the way each peer documents, and stopped by PID.

Each worker command runs in its own session (so a worker that forks a pool,
like Celery's prefork or Dramatiq's process supervisor, keeps its children in
a process group whose id is the PID we started). ``stop`` sends SIGTERM to
that PID, waits, and then SIGKILLs the group led by that same PID; it runs on
every exit path.

Workers tell the driver they are ready (and, where the server holds no cheap
count, that a job finished) through a ``Beacon``: UDP datagrams on loopback,
so the signal costs the server nothing. ``BENCH_BEACON`` carries its address.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.params import BenchError
from bench.peers.base import FAILED_START, status

BEACON_ENV = "BENCH_BEACON"
URL_ENV = "BENCH_PEER_URL"
PAD_ENV = "BENCH_PEER_PAD"
REPO = Path(__file__).resolve().parents[2]
PIDS_FILE = "worker.pids"

_sender: socket.socket | None = None


def beacon_send(kind: str) -> None:
    """From inside a worker: one datagram to the driver (nothing if no beacon is set)."""
    global _sender
    address = os.environ.get(BEACON_ENV)
    if not address:
        return
    if _sender is None:
        _sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host, _, port = address.rpartition(":")
    _sender.sendto(kind.encode(), (host, int(port)))


class Beacon:
    """Counts datagrams by kind ("ready", "done") on a loopback UDP port."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="beacon", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def _loop(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            self.counts[data.decode()] += 1

    def wait(self, kind: str, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.counts[kind] < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1)
        self._sock.close()


class WorkerProcesses:
    """Worker commands started in their own sessions; ``stop`` ends them all by PID."""

    def __init__(self, commands: Sequence[Sequence[str]], url: str, beacon: Beacon | None,
                 log_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.commands, self.log_dir = [list(c) for c in commands], log_dir
        self.env = {**os.environ, URL_ENV: url, "PYTHONPATH": str(REPO),
                    "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        if beacon is not None:
            self.env[BEACON_ENV] = beacon.address
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> WorkerProcesses:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index, command in enumerate(self.commands):
            with open(self.log_dir / f"worker-{index}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True))
            with open(self.log_dir / PIDS_FILE, "a") as f:  # for reap_leftovers
                f.write(f"{self.procs[-1].pid}\n")
        return self

    def check_alive(self) -> None:
        dead = [(p.pid, p.returncode) for p in self.procs if p.poll() is not None]
        if dead:
            raise BenchError(f"worker processes exited: {dead}; logs in {self.log_dir}")

    def cpu_s(self) -> float | None:
        """User + system CPU of every process in the workers' sessions, reaped children
        included (RQ's work horses, Celery's recycled pool processes); None off Linux."""
        leaders, ticks = {p.pid for p in self.procs}, 0
        try:
            entries = [e for e in os.listdir("/proc") if e.isdigit()]
        except OSError:
            return None
        for entry in entries:
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) in leaders:  # session id (stat field 6)
                ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 1500) -> str:
        texts = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)

    def stop(self, grace_s: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                _signal_pid(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _signal_pid(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            _signal_group(proc.pid, signal.SIGKILL)  # pool children left behind, if any


@contextlib.contextmanager
def started(commands: Sequence[Sequence[str]], url: str, beacon: Beacon, log_dir: Path,
            ready: int | Callable[[], bool], timeout_s: float = 60.0,
            extra_env: dict[str, str] | None = None) -> Iterator[WorkerProcesses]:
    """Start the workers, wait until they are ready, always stop them on the way out.

    ``ready`` is the number of "ready" beacons to wait for, or a check to poll.
    """
    group = WorkerProcesses(commands, url, beacon, log_dir, extra_env)
    target = beacon.counts["ready"] + ready if isinstance(ready, int) else 0
    try:
        group.start()
        deadline = time.monotonic() + timeout_s
        while not (beacon.counts["ready"] >= target if isinstance(ready, int) else ready()):
            group.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"workers not ready within {timeout_s:.0f}s:\n{group.log_tail()}")
            time.sleep(0.02)
        yield group
    finally:
        group.stop()


def run_phase(out: dict[str, Any], names: Sequence[str], commands: Sequence[Sequence[str]],
              url: str, beacon: Beacon, log_dir: Path, ready: int | Callable[[], bool],
              body: Callable[[WorkerProcesses], dict[str, Any]],
              extra_env: dict[str, str] | None = None) -> None:
    """Start workers, run ``body(workers)`` (scenario -> cell) into ``out``, stop the workers.
    Workers that do not come up make "failed to start" cells for ``names``."""
    try:
        with started(commands, url, beacon, log_dir, ready, extra_env=extra_env) as group:
            out.update(body(group))
    except BenchError as e:
        out.update({n: status(FAILED_START, str(e)) for n in names if n not in out})


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    """The group is the session we created for this PID: only its own descendants."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_leftovers(log_dir: Path) -> list[int]:
    """After a driver was killed: SIGKILL the worker sessions it started that still run.

    Only a PID recorded in a ``worker.pids`` file under ``log_dir`` that still leads its
    own session and runs this interpreter is touched.
    """
    killed = []
    for pids in log_dir.rglob(PIDS_FILE):
        for line in pids.read_text().split():
            pid = int(line)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    exe = f.read().split(b"\0")[0].decode(errors="replace")
                ours = os.getsid(pid) == pid and exe == sys.executable
            except (OSError, ProcessLookupError):
                continue
            if ours:
                _signal_group(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def python(*args: str) -> list[str]:
    """A command line running this interpreter (the venv's, with every peer installed)."""
    return [sys.executable, *args]
