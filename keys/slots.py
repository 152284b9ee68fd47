"""Redis Cluster hash-slot math: CRC16 (XMODEM) of the hash tag, modulo 16384.

Kept here, free of any client library, so the partition table can be checked
without a server and the engine can route FCALLs by slot itself.
"""

from __future__ import annotations

import binascii

SLOT_COUNT = 16384


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _make_table()


def crc16_reference(data: bytes) -> int:
    """CRC16-CCITT (XMODEM) in pure Python; the test checks ``crc16`` against it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with (C speed)."""
    return binascii.crc_hqx(data, 0)


def hash_tag(key: str | bytes) -> bytes:
    """The part of a key that Redis Cluster hashes: the first non-empty ``{...}``."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            return raw[start + 1 : end]
    return raw


def key_slot(key: str | bytes) -> int:
    """The cluster slot of a key, exactly as the server computes it."""
    return crc16(hash_tag(key)) % SLOT_COUNT
