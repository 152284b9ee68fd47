"""Partitions: a fixed number P of hash tags spread evenly over the 16384 slots.

Partition N's tag is the shortest string that hashes to the centre of the
N-th of P equal slot ranges, so partitions spread evenly over any number of
nodes that hold equal contiguous slot ranges (the way clusters are usually
laid out). The slot→tag table is precomputed in ``slot_tags.txt``.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

from keys.ids import InvalidName
from keys.slots import SLOT_COUNT

DEFAULT_PARTITIONS = 256
MAX_PARTITIONS = SLOT_COUNT


@lru_cache(maxsize=1)
def slot_tags() -> tuple[str, ...]:
    """Slot → shortest alphanumeric tag hashing to it (16384 entries)."""
    text = Path(__file__).with_name("slot_tags.txt").read_text()
    tags = tuple(text.split())
    if len(tags) != SLOT_COUNT:
        raise RuntimeError(f"slot_tags.txt holds {len(tags)} tags, expected {SLOT_COUNT}")
    return tags


def check_partition_count(partitions: int) -> int:
    """Refuse a partition count the tag table cannot spread (1..16384)."""
    if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidName(f"partition count must be an integer in 1..{MAX_PARTITIONS}, got {partitions!r}")
    return partitions


def partition_slot(partition: int, partitions: int) -> int:
    """The slot partition N lives on: the centre of its 1/P share of the slot space."""
    return ((2 * partition + 1) * SLOT_COUNT) // (2 * partitions)


@lru_cache(maxsize=4)
def partition_tags(partitions: int) -> tuple[str, ...]:
    """The P hash tags, index = partition number."""
    check_partition_count(partitions)
    table = slot_tags()
    return tuple(table[partition_slot(n, partitions)] for n in range(partitions))


def partition_of_key(text: str, partitions: int) -> int:
    """A stable partition for an arbitrary string (used for idempotency keys)."""
    return zlib.crc32(text.encode()) % partitions
