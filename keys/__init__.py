"""Partition math and every key name: the single source of truth for keys."""

from keys.ids import (
    KIND_EXECUTION,
    KIND_FLOW,
    InvalidName,
    MalformedId,
    check_lane,
    check_namespace,
    new_id,
    parse_id,
    partition_of,
)
from keys.partitions import DEFAULT_PARTITIONS, partition_of_key, partition_slot, partition_tags
from keys.schema import DEFAULT_NAMESPACE, KeySpace
from keys.slots import SLOT_COUNT, crc16, hash_tag, key_slot

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_PARTITIONS",
    "KIND_EXECUTION",
    "KIND_FLOW",
    "InvalidName",
    "KeySpace",
    "MalformedId",
    "SLOT_COUNT",
    "check_lane",
    "check_namespace",
    "crc16",
    "hash_tag",
    "key_slot",
    "new_id",
    "parse_id",
    "partition_of",
    "partition_of_key",
    "partition_slot",
    "partition_tags",
]
