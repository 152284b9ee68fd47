"""Ports and processes: free loopback ports, PIDs, stopping servers."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path

from engine.localcluster.common import (
    BUS_PORT_OFFSET,
    HOST,
    POLL_S,
    PORT_RANGE,
    SERVER_NAMES,
    LocalClusterError,
)


def port_is_free(port: int) -> bool:
    """True when a server could listen on the port (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int, with_bus: bool, avoid: Iterable[int] = ()) -> list[int]:
    """Random free ports whose bus ports (port + 10000) are free too when needed."""
    chosen: list[int] = []
    taken = set(avoid)
    for _ in range(count * 200):
        if len(chosen) == count:
            return chosen
        port = random.randint(*PORT_RANGE)
        if port in taken or (with_bus and port + BUS_PORT_OFFSET in taken):
            continue
        if port_is_free(port) and (not with_bus or port_is_free(port + BUS_PORT_OFFSET)):
            chosen.append(port)
            taken.update((port, port + BUS_PORT_OFFSET))
    if len(chosen) == count:
        return chosen
    raise LocalClusterError(f"could not find {count} free ports in {PORT_RANGE}")


def _reap(pid: int) -> None:
    """Collect a zombie when the pid is our own child; harmless otherwise."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_server_pid(pid: int, port: int) -> bool:
    """True when the pid is still a valkey/redis server on this port (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return False
    # The server retitles itself "valkey-server 127.0.0.1:PORT [cluster]".
    return any(name in cmdline for name in SERVER_NAMES) and str(port) in cmdline


def terminate_pids(pids: Iterable[int], timeout_s: float = 5.0) -> None:
    """SIGTERM every pid, then SIGKILL whatever still runs after the timeout."""
    remaining = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    for pid in remaining:
        _signal(pid, signal.SIGCONT)  # a node paused by a test must wake to exit
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if pid_alive(pid)]
        if remaining:
            time.sleep(POLL_S)
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if pid_alive(pid)]
        if remaining:
            time.sleep(POLL_S)


def _signal(pid: int, sig: int) -> bool:
    """Send a signal; False when the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- replies
