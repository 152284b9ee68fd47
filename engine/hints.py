"""Hints: "partition N has ready work in lane L", pushed after a transition made work ready.

A transition cannot write outside its own slot, so the caller pushes the hint
once the FCALL has replied (pushing earlier could wake a worker before the
work exists). Hints are only wake-ups: a hint that finds nothing costs one
claim, and a lost one is found again by the reconciler, so each list is
capped (LTRIM) instead of growing without bound when no worker listens.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.router import BLOCK_MARGIN_S, Command
from keys import KeySpace

HINT_LIST_CAP = 10_000


def hint_commands(ks: KeySpace, targets: Iterable[tuple[int, str]]) -> list[Command]:
    """LPUSH+LTRIM for each distinct (partition, lane)."""
    commands: list[Command] = []
    for partition, lane in dict.fromkeys(targets):
        key = ks.hint(lane, ks.hint_index(partition))
        commands.append(Command(("LPUSH", key, partition), key))
        commands.append(Command(("LTRIM", key, 0, HINT_LIST_CAP - 1), key))
    return commands


def pop_hints(ks: KeySpace, lane: str, index: int, timeout_s: float, count: int) -> Command:
    """BLMPOP of up to ``count`` hints from one list; parses to a list of partitions."""
    key = ks.hint(lane, index)

    def parse(reply: object) -> list[int]:
        if not reply:
            return []
        values: list[str] = reply[1]  # type: ignore[index]
        return [int(v) for v in values]

    return Command(("BLMPOP", timeout_s, 1, key, "RIGHT", "COUNT", count), key, parse,
                   read_timeout_s=timeout_s + BLOCK_MARGIN_S)
