"""How long single commands ran on the server: every primary's SLOWLOG, per phase.

The server logs each command that ran at least ``threshold_us`` in its
SLOWLOG, with its own measured duration: a whole ``FCALL`` is one entry (the
time the shard served nobody else), and Valkey also logs the commands a
function runs that were that slow on their own. ``SlowLogs`` sets the threshold and
length on every primary, ``reset()`` empties the logs before a phase and
``read()`` collects them after it; on exit the previous settings come back.
A threshold of 0 would log every call, which on 20,000-step flows costs more
than the calls themselves; a few milliseconds keeps the log short and still
catches every call near a 20 ms bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from bench.server import Target
from engine.router import run_command

SETTINGS = ("slowlog-log-slower-than", "slowlog-max-len")
FUNCTION_CALLS = frozenset({"FCALL", "FCALL_RO"})


@dataclass
class CallStats:
    """The logged calls of one function (or plain command) in one phase."""

    logged: int = 0  # calls at or over the threshold
    over_limit: int = 0  # calls over the phase's limit
    max_us: int = 0
    logged_us: int = 0

    def add(self, duration_us: int, limit_us: int) -> None:
        self.logged += 1
        self.logged_us += duration_us
        self.max_us = max(self.max_us, duration_us)
        self.over_limit += duration_us > limit_us


@dataclass
class PhaseLog:
    """What the slow logs held after one phase: per function, and whether a log overflowed."""

    calls: dict[str, CallStats] = field(default_factory=dict)
    overflowed: bool = False

    def max_us(self) -> int:
        return max((s.max_us for s in self.calls.values()), default=0)

    def over_limit(self) -> int:
        return sum(s.over_limit for s in self.calls.values())


def call_name(args: list[str]) -> str:
    """``FCALL flow_submit 1 key ...`` -> ``flow_submit``; any other command -> its name."""
    command = args[0].upper() if args else "?"
    if command in FUNCTION_CALLS and len(args) > 1:
        return args[1]
    return command


class SlowLogs:
    """The SLOWLOG of every primary of ``target``: ``threshold_us``, room for ``max_len``."""

    def __init__(self, target: Target, threshold_us: int, max_len: int, limit_us: int) -> None:
        self.target, self.threshold_us, self.max_len, self.limit_us = (
            target, threshold_us, max_len, limit_us)
        self._saved: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> SlowLogs:
        for node in self.target.primaries:
            client = self.target.node_client(node)
            try:
                self._saved[node] = {name: client.config_get(name)[name] for name in SETTINGS}
                client.config_set("slowlog-log-slower-than", self.threshold_us)
                client.config_set("slowlog-max-len", self.max_len)
            finally:
                client.close()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for node, saved in self._saved.items():
            client = self.target.node_client(node)
            try:
                for name, value in saved.items():
                    client.config_set(name, value)
            finally:
                client.close()

    def reset(self) -> None:
        for node in self.target.primaries:
            client = self.target.node_client(node)
            try:
                client.slowlog_reset()
            finally:
                client.close()

    def read(self) -> PhaseLog:
        out = PhaseLog()
        for node in self.target.primaries:
            client = self.target.node_client(node)
            try:  # raw entries: {id, time, duration_us, args, client, name}
                entries = run_command(client, "SLOWLOG", "GET", "-1")
            finally:
                client.close()
            out.overflowed |= len(entries) >= self.max_len
            for entry in entries:
                stats = out.calls.setdefault(call_name([str(a) for a in entry[3]]), CallStats())
                stats.add(int(entry[2]), self.limit_us)
        return out
