"""Every key flowslot writes, spelled once.

A partition's keys all share its hash tag: ``<ns>:{<tag>}:<suffix>``. Lua
functions that must reach keys they cannot receive in KEYS (an execution
popped from a ready set, say) rebuild them from a KEYS entry's prefix with the
``K.<method>`` helpers in ``lua/00_helpers.lua``, one per method here that the
Lua builds, named alike; ``tests/unit/test_lua_contract.py`` runs each helper
against its method and checks that every key method has a helper or is
listed there as built in Python only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keys.ids import InvalidName, check_namespace
from keys.partitions import DEFAULT_PARTITIONS, check_partition_count, partition_tags

DEFAULT_NAMESPACE = "fs"
DEFAULT_HINT_LISTS = 4  # or the partition count, when smaller (hint_lists=0 asks for this default)


@dataclass(frozen=True)
class KeySpace:
    """Key builder for one deployment (namespace, partition count).

    ``hint_lists`` 0 (the default) is ``min(DEFAULT_HINT_LISTS, partitions)``, so a deployment
    of 1 to 3 partitions works without naming it, and every process of one deployment derives
    the same count from its partition count.
    """

    namespace: str = DEFAULT_NAMESPACE
    partitions: int = DEFAULT_PARTITIONS
    hint_lists: int = 0
    tags: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_partition_count(self.partitions)
        check_namespace(self.namespace)
        if type(self.hint_lists) is int and self.hint_lists == 0:
            object.__setattr__(self, "hint_lists", min(DEFAULT_HINT_LISTS, self.partitions))
        if (not isinstance(self.hint_lists, int) or isinstance(self.hint_lists, bool)
                or not 1 <= self.hint_lists <= self.partitions):
            raise InvalidName(f"hint_lists must be an integer in 1..{self.partitions}, got {self.hint_lists!r}")
        object.__setattr__(self, "tags", partition_tags(self.partitions))

    # -- deployment-wide --------------------------------------------------
    def config(self) -> str:
        """HASH: deployment settings checked at every connect (partition count)."""
        return f"{self.namespace}:config"

    def daemons(self) -> str:
        """ZSET: live reconciler daemons, score = heartbeat expiry (ms)."""
        return f"{self.namespace}:daemons"

    def secrets(self) -> str:
        """HASH: signing keys of signal tokens: ``current`` → key id, ``secret:<id>`` → hex
        secret, ``retired:<id>`` → end of its grace (ms). See engine/signing.py."""
        return f"{self.namespace}:secrets"

    def promote_pass(self) -> str:
        """STRING with a TTL: held by the worker whose periodic promotion pass runs now
        (``SET NX PX``), so the full pass costs one round per interval whatever the worker count."""
        return f"{self.namespace}:promote-pass"

    def hint(self, lane: str, index: int) -> str:
        """LIST: partitions with ready work in ``lane``; list ``index`` of ``hint_lists``."""
        return f"{self.prefix(self.hint_partition(index))}hint:{lane}"

    def hint_partition(self, index: int) -> int:
        """Hint list ``index`` shares the slot of this partition (spreads lists over nodes)."""
        return (index * self.partitions) // self.hint_lists

    def hint_index(self, partition: int) -> int:
        """Which hint list announces work in ``partition``."""
        return partition % self.hint_lists

    # -- per partition ----------------------------------------------------
    def prefix(self, partition: int) -> str:
        return f"{self.namespace}:{{{self.tags[partition]}}}:"

    def execution(self, partition: int, execution_id: str) -> str:
        """HASH: one execution (state, task, payload, attempts, lease, result...)."""
        return f"{self.prefix(partition)}x:{execution_id}"

    def done(self, partition: int, execution_id: str) -> str:
        """LIST: pushed once by the terminal transition; result waiters block on it."""
        return f"{self.prefix(partition)}done:{execution_id}"

    def idempotency(self, partition: int, idem_key: str) -> str:
        """STRING: idempotency key → execution id."""
        return f"{self.prefix(partition)}idem:{idem_key}"

    def ready(self, partition: int, lane: str) -> str:
        """ZSET: claimable executions of a lane, score = priority band then age."""
        return f"{self.prefix(partition)}ready:{lane}"

    def delayed(self, partition: int) -> str:
        """ZSET: delayed / backing-off executions, score = due time (ms)."""
        return f"{self.prefix(partition)}delayed"

    def leases(self, partition: int) -> str:
        """ZSET: leased executions, score = lease expiry (ms)."""
        return f"{self.prefix(partition)}leases"

    def deadlines(self, partition: int) -> str:
        """ZSET: non-terminal executions with a deadline, score = deadline (ms)."""
        return f"{self.prefix(partition)}deadlines"

    def terminal(self, partition: int) -> str:
        """ZSET: terminal executions, score = finish time (ms), for retention."""
        return f"{self.prefix(partition)}terminal"

    def counts(self, partition: int) -> str:
        """HASH: ``<lane>:<state>`` → number of executions, kept by every transition."""
        return f"{self.prefix(partition)}counts"

    def events(self, partition: int) -> str:
        """STREAM: one entry per transition, trimmed with MAXLEN ~."""
        return f"{self.prefix(partition)}events"

    def check_cursor(self, partition: int) -> str:
        """STRING: id of the last event the index check examined (``rec_audit``)."""
        return f"{self.prefix(partition)}check_cursor"

    def pending_dispatch(self, partition: int) -> str:
        """ZSET: terminal executions whose outgoing edges are not all resolved yet."""
        return f"{self.prefix(partition)}pending_dispatch"

    def flows(self, partition: int) -> str:
        """ZSET: flows of the partition by creation time."""
        return f"{self.prefix(partition)}flows"

    def flows_done(self, partition: int) -> str:
        """ZSET: terminal flows by finish time, for retention."""
        return f"{self.prefix(partition)}flows_done"

    # -- flows (see lua/40_flows.lua for what each holds) ----------------
    def flow(self, partition: int, flow_id: str) -> str:
        """HASH: a flow's state, name, labels and per-state step counters."""
        return f"{self.prefix(partition)}f:{flow_id}"

    def flow_steps(self, partition: int, flow_id: str) -> str:
        """HASH: step id → execution id."""
        return f"{self.flow(partition, flow_id)}:steps"

    def flow_order(self, partition: int, flow_id: str) -> str:
        """LIST: execution ids in creation order."""
        return f"{self.flow(partition, flow_id)}:order"

    def flow_done(self, partition: int, flow_id: str) -> str:
        """LIST: pushed when the flow is terminal; waiters block on it."""
        return f"{self.flow(partition, flow_id)}:done"

    def flow_held(self, partition: int, flow_id: str) -> str:
        """ZSET: ready steps held while the flow is paused."""
        return f"{self.flow(partition, flow_id)}:held"

    def flow_roots(self, partition: int, flow_id: str) -> str:
        """LIST: root steps waiting for a batched submit to be sealed."""
        return f"{self.flow(partition, flow_id)}:roots"

    def flow_retry(self, partition: int, flow_id: str) -> str:
        """SET: execution ids a ``flow_retry`` in progress is re-running."""
        return f"{self.flow(partition, flow_id)}:retry"

    def waiting(self, partition: int) -> str:
        """ZSET: the partition's waiting steps, score = when they started waiting (ms)."""
        return f"{self.prefix(partition)}waiting"

    def waits(self, partition: int, wait_key: str) -> str:
        """SET: ids of the steps waiting for one event and correlation (``wait_key``: 22
        base64url characters of SHA-256 of ``<event>|<canonical correlation>``, see
        engine/events.py ``Correlation.wait_key``)."""
        return f"{self.prefix(partition)}wait:{wait_key}"

    def signals(self, partition: int, execution_id: str) -> str:
        """HASH: wait name → JSON payload of each signal delivered to one execution (a handler's
        ``wait_for``; see lua/65_signals.lua ``exec_signal``)."""
        return f"{self.prefix(partition)}sig:{execution_id}"

    def event_buffer(self, partition: int, wait_key: str) -> str:
        """LIST: payloads of an event that came before any step of its correlation waited (TTL)."""
        return f"{self.prefix(partition)}evbuf:{wait_key}"

    def event_seen(self, partition: int, event: str, event_id: str) -> str:
        """STRING: marks an event id as applied, so a repeated delivery changes nothing (TTL)."""
        return f"{self.prefix(partition)}evseen:{event}:{event_id}"

    def outbox(self, partition: int) -> str:
        """ZSET: ids of the messages this partition sent to others and nobody acknowledged yet,
        score = creation time (ms); see engine/outbox.py."""
        return f"{self.prefix(partition)}outbox"

    def outbox_msgs(self, partition: int) -> str:
        """HASH: message id → JSON ``{"kind", "to", "body"}`` of each message in ``outbox``."""
        return f"{self.prefix(partition)}outbox_msgs"

    def outbox_seq(self, partition: int) -> str:
        """STRING: counter that numbers the partition's outgoing messages (never deleted)."""
        return f"{self.prefix(partition)}outbox_seq"

    def inbox(self, partition: int) -> str:
        """ZSET: ids of the messages applied to this partition, score = when (ms); pruned after
        24 h. A message applied again finds its id here and changes nothing."""
        return f"{self.prefix(partition)}inbox"

    def flow_ops(self, partition: int) -> str:
        """ZSET: multi-call flow operations in progress, ``<op>:<flow id>`` by start time
        (op: seal, cancel, resume, retry); the reconciler finishes what a crash left."""
        return f"{self.prefix(partition)}flow_ops"

    def edges_in(self, partition: int, execution_id: str) -> str:
        """HASH: upstream step → "kind|state" of each incoming edge."""
        return f"{self.prefix(partition)}in:{execution_id}"

    def edges_out(self, partition: int, execution_id: str) -> str:
        """LIST: child execution ids."""
        return f"{self.prefix(partition)}out:{execution_id}"

    def inputs(self, partition: int, execution_id: str) -> str:
        """HASH: upstream step → JSON input passed by a resolved edge."""
        return f"{self.prefix(partition)}inp:{execution_id}"

    def defaults(self, partition: int, execution_id: str) -> str:
        """HASH: upstream step → JSON default of a ref_or_default edge."""
        return f"{self.prefix(partition)}def:{execution_id}"

    def unsealed(self, partition: int) -> str:
        """ZSET: flows whose batched submit has not sealed yet, by creation time."""
        return f"{self.prefix(partition)}unsealed"

    # -- wants and data slices (see lua/15_wants.lua) -----------------------
    def slice(self, partition: int, name: str) -> str:
        """HASH: a data slice's canonical record: state (missing/building/live/failed), the
        execution building it, when it became live, why it failed."""
        return f"{self.prefix(partition)}sl:{name}"

    def slice_wants(self, partition: int, name: str) -> str:
        """SET: ids of the wants waiting for a data slice's build to settle."""
        return f"{self.prefix(partition)}slw:{name}"

    def slices(self, partition: int) -> str:
        """ZSET: the partition's data slices, score = last transition (ms)."""
        return f"{self.prefix(partition)}slices"

    def want(self, partition: int, want_id: str) -> str:
        """HASH: one want: state, slices, data timestamp, SLA and TTL due times, source, reason."""
        return f"{self.prefix(partition)}w:{want_id}"

    def want_slices(self, partition: int, want_id: str) -> str:
        """HASH: slice → what a want knows of it (requested, building, live, failed)."""
        return f"{self.prefix(partition)}wsl:{want_id}"

    def wants(self, partition: int) -> str:
        """ZSET: the partition's wants by creation time (ms)."""
        return f"{self.prefix(partition)}wants"

    def want_due(self, partition: int) -> str:
        """ZSET: ``sla:<want id>`` / ``ttl:<want id>`` by due time (ms), for the wants scanner."""
        return f"{self.prefix(partition)}want_due"

    def wants_done(self, partition: int) -> str:
        """ZSET: ended wants by when they ended (ms), for retention (``want_purge``)."""
        return f"{self.prefix(partition)}wants_done"

    def wants_breached(self, partition: int) -> str:
        """ZSET: wants that missed their SLA, score = when the breach was seen (ms)."""
        return f"{self.prefix(partition)}wants_breached"

    def want_counts(self, partition: int) -> str:
        """HASH: want state → number of wants of the partition, kept by every want transition."""
        return f"{self.prefix(partition)}want_counts"

    def build_waits(self, partition: int) -> str:
        """ZSET: builds waiting for missing slices, score = since when, or when the want_cycles
        scanner last walked from them (it re-scores each one it walks)."""
        return f"{self.prefix(partition)}build_waits"

    def missing(self, partition: int, execution_id: str) -> str:
        """HASH: for a build waiting on missing slices: slice → ``<want id>|<state>`` of the
        upstream want it spawned (state: waiting, live, failed)."""
        return f"{self.prefix(partition)}miss:{execution_id}"

    def probe(self, partition: int) -> str:
        """Never written: every writing Lua function reads it first, so a slot that is
        being migrated refuses the call before its first write (``check_slot_stable``)."""
        return f"{self.prefix(partition)}probe"

    def owner(self, partition: int) -> str:
        """STRING: the daemon whose reconciler owns this partition (with a TTL)."""
        return f"{self.prefix(partition)}owner"
