"""The state file that lets `flowslot cluster status|down` find a cluster another process started."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import redis

from engine.localcluster.cluster import LocalCluster
from engine.localcluster.common import LocalClusterError
from engine.localcluster.processes import is_server_pid, pid_alive, terminate_pids
from engine.localcluster.topology import parse_info
from engine.router import run_command


def state_path() -> Path:
    """``$FLOWSLOT_HOME/cluster.json``, default ``~/.flowslot/cluster.json``."""
    home = os.environ.get("FLOWSLOT_HOME") or "~/.flowslot"
    return Path(home).expanduser() / "cluster.json"


def save_state(cluster: LocalCluster, path: Path | None = None) -> Path:
    """Record a started cluster so another process (the CLI) can find and stop it."""
    target = path or state_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.tmp")
    partial.write_text(json.dumps(cluster.to_state(), indent=2) + "\n")
    partial.replace(target)
    return target


def load_state(path: Path | None = None) -> dict[str, Any] | None:
    """The recorded cluster, or None when nothing is recorded."""
    source = path or state_path()
    try:
        state = json.loads(source.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LocalClusterError(f"cannot read cluster state {source}: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("nodes"), list):
        raise LocalClusterError(f"cluster state {source} is not a recorded cluster")
    return state


def live_pids(state: dict[str, Any]) -> list[int]:
    """Recorded pids that still belong to their server (a reused pid is not ours)."""
    return [
        node["pid"]
        for node in state["nodes"]
        if pid_alive(node["pid"]) and is_server_pid(node["pid"], node["port"])
    ]


def stop_from_state(path: Path | None = None, timeout_s: float = 5.0) -> list[int]:
    """Stop every recorded server still running, then delete the state file."""
    source = path or state_path()
    state = load_state(source)
    if state is None:
        return []
    pids = live_pids(state)
    terminate_pids(pids, timeout_s)
    if state.get("owns_dir") and state.get("dir"):
        shutil.rmtree(state["dir"], ignore_errors=True)
    source.unlink(missing_ok=True)
    return pids


def probe_nodes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each recorded node plus whether its pid runs, whether it answers, its cluster_state."""
    report = []
    for node in state["nodes"]:
        row = dict(node, alive=pid_alive(node["pid"]), ping=False, cluster_state=None)
        client = redis.Redis(
            host=node["host"], port=node["port"], decode_responses=True, socket_timeout=1
        )
        try:
            row["ping"] = bool(client.ping())
            if state.get("mode") == "cluster":
                info = parse_info(run_command(client, "CLUSTER", "INFO"))
                row["cluster_state"] = info.get("cluster_state")
        except redis.RedisError:
            pass
        finally:
            client.close()
        report.append(row)
    return report


def running_server(state: dict[str, Any]) -> dict[str, str] | None:
    """What the first answering node says it is (``INFO server``): path, flavor, version.

    This names the binary actually running, which a state file written by an
    older flowslot, or a node restarted by hand, may not.
    """
    for node in state["nodes"]:
        client = redis.Redis(host=node["host"], port=node["port"], decode_responses=True,
                             socket_timeout=1)
        try:
            info = client.info("server")
        except redis.RedisError:
            continue
        finally:
            client.close()
        flavor = str(info.get("server_name") or "redis")
        version = info.get(f"{flavor}_version") or info.get("redis_version")
        return {"path": str(info.get("executable", "")), "flavor": flavor, "version": str(version)}
    return None
