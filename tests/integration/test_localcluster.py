"""The embedded local cluster against real servers: formation, replicas, migration, CLI."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.crc import key_slot
from redis.exceptions import MovedError

from engine.cli.cluster import cluster as cluster_cli
from engine.localcluster import (
    CLUSTER_SLOTS,
    LocalCluster,
    LocalClusterError,
    find_server_binary,
    parse_info,
    parse_server_version,
    pick_free_ports,
    pid_alive,
)
from engine.router import run_command

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(primaries=3) as local:
        yield local


def cluster_info(local: LocalCluster, port: int) -> dict[str, str]:
    return parse_info(run_command(local.client(port), "CLUSTER", "INFO"))


def test_version_output_of_both_flavors_is_parsed() -> None:
    assert parse_server_version("Valkey server v=9.1.2 sha=0 malloc=libc") == ("valkey", (9, 1, 2))
    assert parse_server_version("Redis server v=7.2.4 sha=0") == ("redis", (7, 2, 4))
    assert parse_server_version("something else") is None


def test_found_binary_supports_functions() -> None:
    binary = find_server_binary()
    assert binary.supports_functions and binary.path.exists()


def test_three_primaries_cover_every_slot_and_report_ok(cluster: LocalCluster) -> None:
    assert len(cluster.primaries()) == 3
    for node in cluster.nodes:
        info = cluster_info(cluster, node.port)
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_assigned"] == str(CLUSTER_SLOTS)
        assert info["cluster_known_nodes"] == "3"
    view = cluster.slot_view(cluster.nodes[0].port)
    assert sum(end - start + 1 for start, end, _, _ in view) == CLUSTER_SLOTS
    assert {primary for _, _, primary, _ in view} == {n.port for n in cluster.nodes}
    assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}"


def test_migrated_slot_answers_moved_from_the_old_owner(cluster: LocalCluster) -> None:
    key = "flowslot:migrate-me"
    slot = key_slot(key.encode())
    source = cluster.slot_owner(slot)
    target = next(n.port for n in cluster.primaries() if n.port != source)
    cluster.client(source).set(key, "v")

    cluster.migrate_slot(slot, target)

    with (
        redis.Redis(port=source, decode_responses=True) as plain,
        pytest.raises(MovedError) as moved,
    ):
        plain.get(key)
    assert str(moved.value).endswith(f"127.0.0.1:{target}")
    assert cluster.client(target).get(key) == "v"
    assert cluster.slot_owner(slot) == target


def test_killed_primary_restarts_on_its_port_and_rejoins(cluster: LocalCluster) -> None:
    node = cluster.primaries()[-1]
    old_pid, old_id = node.pid, node.node_id

    cluster.kill_node(node.port)
    assert not pid_alive(old_pid)
    cluster.restart_node(node.port)

    assert node.pid != old_pid
    assert run_command(cluster.client(node.port), "CLUSTER", "MYID") == old_id
    assert cluster_info(cluster, node.port)["cluster_state"] == "ok"


def test_replicas_report_role_slave() -> None:
    with LocalCluster(primaries=3, replicas=1) as local:
        assert len(local.replicas()) == 3
        for node in local.replicas():
            info = local.client(node.port).info("replication")
            assert info["role"] == "slave"
            assert info["master_link_status"] == "up"
        for _, _, _, replica_ports in local.slot_view(local.nodes[0].port):
            assert len(replica_ports) == 1
    assert not any(pid_alive(node.pid) for node in local.nodes)


def test_standalone_answers_ping_with_cluster_disabled() -> None:
    with LocalCluster(standalone=True) as local:
        client = local.client(local.nodes[0].port)
        assert client.ping()
        assert client.info("cluster")["cluster_enabled"] == 0


def test_taken_port_is_named_in_the_error() -> None:
    port = pick_free_ports(1, with_bus=True)[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(LocalClusterError, match=str(port)):
            LocalCluster(primaries=1, ports=[port]).start()


def test_stop_leaves_no_process_and_no_temp_dir() -> None:
    local = LocalCluster(standalone=True).start()
    pids = [node.pid for node in local.nodes]
    base_dir = local.base_dir
    assert all(pid_alive(pid) for pid in pids)

    local.stop()

    assert not any(pid_alive(pid) for pid in pids)
    assert base_dir is not None and not base_dir.exists()


@pytest.fixture
def flowslot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FLOWSLOT_HOME", str(tmp_path))
    yield tmp_path
    CliRunner().invoke(cluster_cli, ["down"])  # never leave servers behind


def test_cli_up_status_down_round_trip(flowslot_home: Path) -> None:
    runner = CliRunner()
    started = runner.invoke(cluster_cli, ["up", "--primaries", "2", "--json"])
    assert started.exit_code == 0, started.output
    pids = [node["pid"] for node in json.loads(started.output)["nodes"]]
    assert (flowslot_home / "cluster.json").exists()

    again = runner.invoke(cluster_cli, ["up"])
    assert again.exit_code == 1 and "flowslot cluster down" in again.output

    shown = runner.invoke(cluster_cli, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    nodes = json.loads(shown.output)["nodes"]
    assert [(n["alive"], n["ping"], n["cluster_state"]) for n in nodes] == [(True, True, "ok")] * 2

    stopped = runner.invoke(cluster_cli, ["down"])
    assert stopped.exit_code == 0, stopped.output
    assert not any(pid_alive(pid) for pid in pids)
    assert not (flowslot_home / "cluster.json").exists()


def test_cli_status_and_down_with_nothing_recorded_exit_1(flowslot_home: Path) -> None:
    for command in ("status", "down"):
        result = CliRunner().invoke(cluster_cli, [command])
        assert result.exit_code == 1
        assert "no local cluster recorded" in result.output
        assert len(result.output.strip().splitlines()) == 1
