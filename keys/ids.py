"""Id formats that reveal their partition without a lookup.

``e_00a3_0190f3c2a1b4c7d2e9f`` is execution 0x00a3's partition (163), then 11
hex digits of creation milliseconds and 8 random hex digits, so ids sort by
creation time within a partition and never collide in practice.
"""

from __future__ import annotations

import os
import re
import time

KIND_EXECUTION = "e"
KIND_FLOW = "f"
# Matched with fullmatch: "$" alone would accept a trailing newline.
_ID_RE = re.compile(r"([ef])_([0-9a-f]{4})_([0-9a-f]{19})")
LANE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
NAMESPACE_RE = LANE_RE


class MalformedId(ValueError):
    """An id that does not have flowslot's shape."""


class InvalidName(ValueError):
    """A lane, namespace or partition count that cannot name keys."""


def new_id(kind: str, partition: int, now_ms: int | None = None) -> str:
    """A fresh id of ``kind`` living in ``partition``."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{kind}_{partition:04x}_{ms & 0xFFFFFFFFFFF:011x}{os.urandom(4).hex()}"


def parse_id(text: str, kind: str | None = None) -> tuple[str, int]:
    """Split an id into (kind, partition); raise MalformedId naming the problem."""
    if not isinstance(text, str):
        raise MalformedId(f"an id must be a string, got {type(text).__name__}")
    match = _ID_RE.fullmatch(text)
    if match is None:
        example = kind or KIND_EXECUTION
        raise MalformedId(f"malformed id {text!r}: expected like '{example}_00a3_' + 19 hex digits")
    if kind is not None and match.group(1) != kind:
        raise MalformedId(f"id {text!r} is not of kind {kind!r}")
    return match.group(1), int(match.group(2), 16)


def partition_of(text: str, partitions: int) -> int:
    """The partition an id lives in, checked against the deployment's count."""
    _, partition = parse_id(text)
    if partition >= partitions:
        raise MalformedId(f"id {text!r} names partition {partition}, but there are {partitions}")
    return partition


def check_lane(lane: str) -> str:
    """Lanes name keys, so they are restricted to a safe alphabet."""
    if not isinstance(lane, str) or not LANE_RE.fullmatch(lane):
        raise InvalidName(f"invalid lane {lane!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    return lane


def check_namespace(namespace: str) -> str:
    """Namespaces prefix every key, so they use the lanes' safe alphabet (no braces, colons)."""
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise InvalidName(f"invalid namespace {namespace!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    return namespace
