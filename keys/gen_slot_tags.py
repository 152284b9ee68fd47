"""Regenerate ``slot_tags.txt``: for every slot, the shortest tag that hashes to it.

Run ``python -m keys.gen_slot_tags`` only if the alphabet changes; the output
is committed so that importing ``keys`` costs one small file read.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from keys.slots import SLOT_COUNT, crc16

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def generate() -> list[str]:
    tags: list[str | None] = [None] * SLOT_COUNT
    missing = SLOT_COUNT
    for length in range(1, 5):
        for chars in itertools.product(ALPHABET, repeat=length):
            tag = "".join(chars)
            slot = crc16(tag.encode()) % SLOT_COUNT
            if tags[slot] is None:
                tags[slot] = tag
                missing -= 1
        if missing == 0:
            break
    assert missing == 0, f"{missing} slots have no tag"
    return [t for t in tags if t is not None]


if __name__ == "__main__":
    out = Path(__file__).with_name("slot_tags.txt")
    out.write_text("\n".join(generate()) + "\n")
    print(f"wrote {out}")
