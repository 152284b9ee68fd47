"""Building flows in Python: steps, references between them, validation, submit.

    flow = app.flow("nightly-report", labels={"team": "bi"})
    raw = flow.step("fetch", fetch, "s3://bucket/2026-11-21")
    clean = flow.step("clean", clean, raw.ref())
    run = flow.submit()

Everything is checked before anything is written: duplicate step ids,
references to unknown steps or to another flow's steps, cycles, the step
bound, unserializable arguments. A reference becomes an edge plus a path in
the payload's ``refs`` list, beside the arguments (``engine/refs.py``); the
worker puts the upstream result (or the default) that the resolving FCALL
copied into the step's inputs at that path. Argument values are never read
as references.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import checks, events, flowcalls, flowops, metrics, outbox, signals
from engine.codec import encode
from engine.dispatcher import announce
from engine.errors import ContractError
from engine.flowbatches import MAX_DYNAMIC_EDGES, WORK_BUDGET, plan_batches
from engine.flowrun import FlowRun
from engine.policy import Retry
from engine.refs import Ref as Ref  # re-exported: Ref was defined here
from engine.refs import find as find_refs
from engine.router import Command
from keys import new_id, partition_of_key

if TYPE_CHECKING:
    from engine.app import App, TaskDef

DEFAULT_MAX_STEPS = 10_000
WAIT_TASK = "flowslot.wait"  # the task name of wait steps: no handler ever runs them
EDGE_KINDS = ("ref", "ref_or_default", "after", "after_any")


@dataclass
class Step:
    """One step of a flow under construction."""

    flow: FlowBuilder
    id: str
    task: TaskDef
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    edges: dict[str, tuple[str, Any]] = field(default_factory=dict)  # upstream -> (kind, default)
    options: dict[str, Any] = field(default_factory=dict)
    execution_id: str = ""

    def ref(self) -> Ref:
        """Required data: this step's result; the consumer is skipped if this step does not succeed."""
        return Ref(self.flow, self.id, "ref")

    def ref_or_default(self, default: Any) -> Ref:
        """Optional data: this step's result, or ``default`` if it does not succeed."""
        return Ref(self.flow, self.id, "ref_or_default", default)


def _group(any_of: bool, quorum: int | None, step_id: str) -> tuple[str, int]:
    if any_of and quorum is not None:
        raise ContractError(f"step {step_id}: choose any_of or quorum, not both")
    if quorum is not None:
        if not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1:
            raise ContractError(f"step {step_id}: quorum must be a positive integer, got {quorum!r}")
        return "quorum", quorum
    return ("any", 0) if any_of else ("all", 0)


def _check_options(step_id: str, lane: Any, priority: Any, retry: Any, deadline_s: Any) -> None:
    """A step's own submit options, checked when the step is added (the error names the step)."""
    try:
        if lane is not None:
            checks.lane(lane)
        if priority is not None:
            checks.priority(priority)
        if retry is not None and not isinstance(retry, Retry):
            raise ContractError(f"retry must be a Retry, got {retry!r}")
        checks.seconds_to_ms(deadline_s, "deadline_s", minimum=checks.MIN_DEADLINE_S)
    except ContractError as e:
        raise ContractError(f"step {step_id!r}: {e}") from e


# What flow_submit takes for a step option its spec leaves out (lua/40_flows.lua check_step,
# create_step; EXEC_DEFAULTS for the retry policy, a unit test compares).
STEP_SPEC_DEFAULTS: dict[str, Any] = {"priority": 0, "max_attempts": 3, "backoff_ms": 1000,
                                      "backoff_max_ms": 300000, "deadline_in_ms": 0, "optional": False,
                                      "policy": "all", "quorum": 0}


class FlowBuilder:
    """Collects steps; ``submit()`` validates them and writes the flow."""

    def __init__(self, app: App, name: str, labels: dict[str, str] | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS, correlate: dict[str, str] | None = None) -> None:
        self.app = app
        self.name = checks.flow_name(name)
        self.labels = checks.labels(labels)
        self.max_steps = max_steps
        # A flow with waits lives in its correlation's partition (engine/events.py).
        self.correlation = None if correlate is None else events.correlation(correlate)
        self.steps: dict[str, Step] = {}
        self.submitted: FlowRun | None = None

    def step(self, step_id: str, task: TaskDef | str | Any, *args: Any,
             kwargs: dict[str, Any] | None = None, after: Iterable[Step | str] = (),
             after_any: Iterable[Step | str] = (), optional: bool = False, any_of: bool = False,
             quorum: int | None = None, lane: str | None = None, priority: int | None = None,
             retry: Retry | None = None, deadline_s: float | None = None) -> Step:
        """Add a step running ``task(*args, **kwargs)``; references in the arguments become edges."""
        if self.submitted is not None:
            raise ContractError(f"flow {self.name!r} was already submitted")
        checks.step_id(step_id)
        if step_id in self.steps:
            raise ContractError(f"duplicate step id {step_id!r} in flow {self.name!r}")
        if len(self.steps) >= self.max_steps:
            raise ContractError(f"flow {self.name!r} has more than {self.max_steps} steps")
        policy, n = _group(any_of, quorum, step_id)
        _check_options(step_id, lane, priority, retry, deadline_s)
        after = checks.dependencies(after, f"step {step_id!r}: after")
        after_any = checks.dependencies(after_any, f"step {step_id!r}: after_any")
        step = Step(self, step_id, self.app._resolve(task), tuple(args),
                    dict(checks.keyword_arguments(kwargs)),
                    options={"lane": lane, "priority": priority, "retry": retry,
                             "deadline_s": deadline_s, "optional": bool(optional),
                             "policy": policy, "quorum": n})
        for _, ref in find_refs(step.args, step.kwargs):
            same_flow = ref.flow is self or ref.flow is None  # None: from a running step's context
            self._add_edge(step, ref.step if same_flow else ref, ref.kind, ref.default)
        for upstream in after:
            self._add_edge(step, upstream, "after")
        for upstream in after_any:
            self._add_edge(step, upstream, "after_any")
        required = sum(1 for kind, _ in step.edges.values() if kind in ("ref", "after"))
        if policy == "quorum" and n > required:
            raise ContractError(f"step {step_id!r}: quorum={n} exceeds its {required} required "
                                f"dependencies (ref() or after)")
        self.steps[step_id] = step
        return step

    def wait(self, step_id: str, event: str | None = None, correlate: dict[str, str] | None = None, *,
             timeout_s: float | None = None, on_timeout: str = "expire", after: Iterable[Step | str] = (),
             after_any: Iterable[Step | str] = (), optional: bool = False, any_of: bool = False,
             quorum: int | None = None) -> Step:
        """Add a step with no handler that waits for ``event`` with this correlation, or for a signal.

        Once its edges are met it is ``waiting``; ``app.deliver(event, correlate, payload)``
        makes it ``succeeded`` with ``payload`` as its result (children get it through
        ``ref()``). After ``timeout_s`` it becomes ``expired`` (``on_timeout="fail"``:
        ``failed``). ``correlate`` defaults to the flow's (``app.flow(..., correlate=)``,
        else the first wait's), which places the flow; a wait on another correlation
        whose partition differs is remote: it registers there through the outbox
        (engine/events.py), and a delivery resumes it through the outbox too.

        Every wait step also takes a signal: ``run.token(step_id)`` (or, in a handler of
        the same flow, ``current_task().token(step_id)``) gives a token with which
        ``app.signal(token, payload)`` completes this one step the same way. Without
        ``event`` (``flow.wait("approve")``) the step waits for a signal only: no event
        matches it, and it needs no correlation.
        """
        corr = events.correlation(correlate) if correlate is not None else self.correlation
        if event is None:
            if correlate is not None:
                raise ContractError(f"wait step {step_id!r}: correlate= needs an event=; a wait "
                                    "without an event takes a signal only")
            spec = signals.signal_wait_spec(timeout_s, on_timeout)
        else:
            name = events.event_name(event)
            if name.startswith("flowslot."):
                raise ContractError(f"wait step {step_id!r}: event names starting with 'flowslot.' are "
                                    "reserved; leave event out for a wait that takes a signal only")
            if corr is None:
                raise ContractError(f"wait step {step_id!r}: give correlate= here or to app.flow()")
            spec = events.wait_spec(name, corr, timeout_s, on_timeout)
        step = self.step(step_id, WAIT_TASK, after=after, after_any=after_any, optional=optional,
                         any_of=any_of, quorum=quorum)
        step.options["wait"] = spec
        if self.correlation is None:
            self.correlation = corr
        return step

    def _add_edge(self, step: Step, upstream: Step | Ref | str, kind: str, default: Any = None) -> None:
        if isinstance(upstream, (Step, Ref)):
            if upstream.flow is not self:
                name = upstream.id if isinstance(upstream, Step) else upstream.step
                raise ContractError(f"step {step.id!r} references step {name!r} of another flow")
            upstream = upstream.id if isinstance(upstream, Step) else upstream.step
        if not isinstance(upstream, str):
            raise ContractError(f"step {step.id!r}: dependencies are steps or step ids, got {upstream!r}")
        checks.step_id(upstream)
        if upstream == step.id:
            raise ContractError(f"step {step.id!r} depends on itself")
        previous = step.edges.get(upstream)
        if previous is not None:
            kinds = {previous[0], kind}
            if kinds == {"ref", "ref_or_default"}:
                raise ContractError(f"step {step.id!r} references {upstream!r} both with and without a default")
            # Two mentions of one upstream merge into one edge: required if either is
            # (ref, after), carrying data if either does (ref, ref_or_default).
            required = bool(kinds & {"ref", "after"})
            data = bool(kinds & {"ref", "ref_or_default"})
            kind = {(True, True): "ref", (False, True): "ref_or_default",
                    (True, False): "after", (False, False): "after_any"}[(required, data)]
            default = previous[1] if previous[0] == "ref_or_default" else default
        step.edges[upstream] = (kind, default)

    # -- validation and encoding -----------------------------------------
    def _topological_order(self) -> list[Step]:
        """Kahn's algorithm; unknown references and cycles are errors naming the steps."""
        for step in self.steps.values():
            for upstream in step.edges:
                if upstream not in self.steps:
                    raise ContractError(f"step {step.id!r} references unknown step {upstream!r}")
        indegree = {sid: len(s.edges) for sid, s in self.steps.items()}
        children: dict[str, list[str]] = {sid: [] for sid in self.steps}
        for sid, step in self.steps.items():
            for upstream in step.edges:
                children[upstream].append(sid)
        position = {sid: n for n, sid in enumerate(self.steps)}
        queue = [(position[sid], sid) for sid, n in indegree.items() if n == 0]
        heapq.heapify(queue)  # stable: definition order wherever the edges allow it
        order: list[Step] = []
        while queue:
            _, sid = heapq.heappop(queue)
            order.append(self.steps[sid])
            for child in children[sid]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(queue, (position[child], child))
        if len(order) != len(self.steps):
            stuck = sorted(sid for sid, n in indegree.items() if n > 0)
            raise ContractError(f"flow {self.name!r} has a cycle through steps {', '.join(stuck)}")
        return order

    def encode_step(self, step: Step, partition: int) -> dict[str, Any]:
        app = self.app
        o = step.options
        spec, _ = app.prepare(step.task, step.args, step.kwargs, lane=o["lane"],
                              priority=o["priority"], retry=o["retry"], deadline_s=o["deadline_s"],
                              partition=partition, allow_refs=True)
        step.execution_id = spec.execution_id
        edges: list[list[str]] = []
        for upstream, (kind, default) in step.edges.items():
            if kind == "ref_or_default":
                edges.append([upstream, kind, encode(default, limit_bytes=app.max_payload_bytes,
                                                     what=f"default of step {step.id!r} for {upstream!r}")])
            else:
                edges.append([upstream, kind])
        encoded: dict[str, Any] = {"step": step.id, "id": step.execution_id, "task": spec.task,
                                   "lane": spec.lane, "payload": spec.payload, "edges": edges}
        # An option at its default is left out: flow_submit takes a missing one as the default
        # (a shorter spec to encode, send and decode per step).
        for name, value in (("priority", spec.priority), ("max_attempts", spec.max_attempts),
                            ("backoff_ms", spec.backoff_ms), ("backoff_max_ms", spec.backoff_max_ms),
                            ("deadline_in_ms", spec.deadline_in_ms), ("optional", o["optional"]),
                            ("policy", o["policy"]), ("quorum", o["quorum"])):
            if value != STEP_SPEC_DEFAULTS[name]:
                encoded[name] = value
        if "wait" in o:
            encoded["wait"] = self._placed_wait(o["wait"], partition)
        return encoded

    def _placed_wait(self, spec: dict[str, Any], partition: int) -> dict[str, Any]:
        """A wait spec for a flow in ``partition``: a wait whose correlation lives in another
        partition gets ``home`` (that partition) and ``here`` (the flow's): it is remote."""
        if spec["event"] == events.SIGNAL_EVENT:
            return spec
        home = partition_of_key(spec["correlate"], self.app.partitions)
        return spec if home == partition else {**spec, "home": home, "here": partition}

    def submit(self, budget: int = WORK_BUDGET) -> FlowRun:
        """Validate, then write the flow: one FCALL when it fits ``budget`` work units
        (steps + edges + payload, see engine/flowbatches.py), else bounded calls with
        the flow held (no step claimable) until the last one lands."""
        if not self.steps:
            raise ContractError(f"flow {self.name!r} has no steps")
        order = self._topological_order()
        partition = (self.correlation.partition(self.app.partitions) if self.correlation is not None
                     else self.app._random_partition())
        flow_id = new_id("f", partition)
        encoded = [self.encode_step(step, partition) for step in order]
        labels = encode(self.labels, limit_bytes=64 * 1024, what="flow labels")
        client = self.app.client
        chunks = plan_batches(encoded, budget)
        ready: list[tuple[str, str]] = []
        skipped: list[str] = []
        # Every call but the last in one pipelined round: they run in order on the flow's
        # node and leave it unsealed. The last seals it, so it goes only once all of them
        # landed; after a refusal the flow stays unsealed and the reconciler cancels it.
        head = [flowcalls.submit(client.keys, flow_id, self.name, labels, json.dumps(chunk), False)
                for chunk in chunks[:-1]]
        for reply in client.run_many(head) if head else []:
            if isinstance(reply, Exception):
                raise reply
            ready += reply.ready
            skipped += reply.skipped
        submitted = client.run(flowcalls.submit(
            client.keys, flow_id, self.name, labels, json.dumps(chunks[-1]), True))
        ready += submitted.ready
        skipped += submitted.skipped
        announce(client, ready, skipped)
        if submitted.roots_left:
            flowops.seal(client, flow_id)
        elif any("home" in spec.get("wait", {}) for spec in encoded):
            outbox.flush_now(client, partition)  # register the remote waits that started now
        metrics.FLOWS.labels("submitted").inc()
        self.submitted = FlowRun(self.app, flow_id, submitted=True)
        return self.submitted


def _check_upstreams_exist(app: App, flow_id: str, partition: int, step: Step, parent_step: str) -> None:
    """A dynamic step may only depend on steps its flow has (one HMGET), so a misspelt
    dependency is a ContractError before ``flow_submit`` runs."""
    upstreams = [upstream for upstream in step.edges if upstream != parent_step]
    if not upstreams:
        return
    key = app.client.keys.flow_steps(partition, flow_id)
    found = app.client.run(Command(("HMGET", key, *upstreams), key))
    missing = [upstream for upstream, eid in zip(upstreams, found, strict=False) if not eid]
    if missing:
        raise ContractError(f"step {step.id!r} depends on {', '.join(map(repr, missing))}, "
                            f"not steps of flow {flow_id}")


def add_dynamic_step(app: App, flow_id: str, parent_id: str, parent_step: str, step_id: str,
                     task: TaskDef | str | Any, args: Sequence[Any], kwargs: dict[str, Any] | None,
                     after: Iterable[str], after_any: Iterable[str], options: dict[str, Any]) -> None:
    """Add a step to a running flow from one of its steps; it depends on that step.

    Refused (InvalidState) once the flow is terminal; re-adding the same step id
    with the same task (a redelivered handler) is a no-op.
    """
    builder = FlowBuilder(app, "dynamic")
    after = checks.dependencies(after, f"step {step_id!r}: after")
    try:
        step = builder.step(step_id, task, *args, kwargs=kwargs, after=[*after, parent_step],
                            after_any=after_any, **options)
    except TypeError as e:  # an option add_step does not know
        raise ContractError(f"add_step: {e}") from e
    if len(step.edges) > MAX_DYNAMIC_EDGES:  # it is written by one call, which must stay bounded
        raise ContractError(f"dynamic step {step_id!r} has {len(step.edges)} dependencies; a step "
                            f"added by a running handler may have at most {MAX_DYNAMIC_EDGES}")
    partition = flowcalls.flow_partition(app.client.keys, flow_id)
    _check_upstreams_exist(app, flow_id, partition, step, parent_step)
    encoded = builder.encode_step(step, partition)
    added = app.client.run(flowcalls.submit(
        app.client.keys, flow_id, "", "{}", json.dumps([encoded]), True, parent_id))
    announce(app.client, added.ready, added.skipped)

