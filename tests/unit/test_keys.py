from collections import Counter

import pytest

from keys import (
    SLOT_COUNT,
    KeySpace,
    MalformedId,
    check_lane,
    key_slot,
    new_id,
    parse_id,
    partition_of,
    partition_slot,
    partition_tags,
)


def test_key_slot_matches_the_values_redis_documents():
    assert key_slot("foo") == 12182
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == key_slot(b"foo{}{bar}")


def test_the_fast_crc16_matches_the_reference_implementation():
    from keys.slots import crc16, crc16_reference

    for data in (b"", b"a", b"123456789", b"fs:{abc}:x:e_0001", bytes(range(256))):
        assert crc16(data) == crc16_reference(data)
    assert crc16(b"123456789") == 0x31C3  # the XMODEM check value


def test_every_partition_tag_hashes_to_its_own_evenly_spaced_slot():
    for partitions in (2, 16, 256, 1024):
        tags = partition_tags(partitions)
        slots = [key_slot("{" + t + "}") for t in tags]
        assert slots == [partition_slot(n, partitions) for n in range(partitions)]
        assert len(set(slots)) == partitions
        gaps = {b - a for a, b in zip(slots, slots[1:], strict=False)}
        assert max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize("nodes", [3, 4, 6, 16])
@pytest.mark.parametrize("partitions", [256, 1024])
def test_partitions_spread_evenly_over_equal_node_ranges(nodes, partitions):
    # Clusters usually give each of N nodes one contiguous, equal range of slots.
    bounds = [(i * SLOT_COUNT) // nodes for i in range(nodes + 1)]
    owner = lambda slot: next(i for i in range(nodes) if bounds[i] <= slot < bounds[i + 1])  # noqa: E731
    per_node = Counter(owner(key_slot("{" + t + "}")) for t in partition_tags(partitions))
    assert len(per_node) == nodes
    assert max(per_node.values()) - min(per_node.values()) <= 1


def test_every_key_of_one_partition_hashes_to_one_slot():
    ks = KeySpace(namespace="fs", partitions=256)
    eid = new_id("e", 77)
    keys = [ks.execution(77, eid), ks.done(77, eid), ks.idempotency(77, "k"), ks.ready(77, "a"),
            ks.delayed(77), ks.leases(77), ks.deadlines(77), ks.terminal(77), ks.counts(77),
            ks.events(77), ks.pending_dispatch(77)]
    assert {key_slot(k) for k in keys} == {partition_slot(77, 256)}


def test_hint_lists_spread_over_distinct_slots():
    ks = KeySpace(partitions=256, hint_lists=4)
    assert len({key_slot(ks.hint("default", i)) for i in range(4)}) == 4
    assert {ks.hint_index(p) for p in range(256)} == {0, 1, 2, 3}


def test_ids_round_trip_their_kind_and_partition():
    for partition in (0, 1, 255, 16383):
        eid = new_id("e", partition)
        assert parse_id(eid) == ("e", partition)
        assert partition_of(eid, 16384) == partition
    assert parse_id(new_id("f", 9), kind="f") == ("f", 9)


@pytest.mark.parametrize("bad", ["", "e_00a3", "x_00a3_0123456789abcdef012", "e_00A3_0123456789abcdef012",
                                 "e_00a3_0123456789abcdef012 ", 42, None])
def test_malformed_ids_are_refused_with_a_clear_error(bad):
    with pytest.raises(MalformedId):
        parse_id(bad)


def test_an_id_naming_a_partition_beyond_the_deployment_is_refused():
    with pytest.raises(MalformedId, match="partition 300"):
        partition_of(new_id("e", 300), 256)


@pytest.mark.parametrize("lane", ["", "a b", "x" * 65, "{tag}", "a:b", None])
def test_invalid_lanes_are_refused(lane):
    with pytest.raises(ValueError, match="invalid lane"):
        check_lane(lane)


def test_namespace_and_partition_count_are_checked():
    with pytest.raises(ValueError):
        KeySpace(namespace="a{b}")
    with pytest.raises(ValueError):
        KeySpace(partitions=0)
    with pytest.raises(ValueError):
        KeySpace(partitions=SLOT_COUNT + 1)
