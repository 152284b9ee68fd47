"""The application object: task registration and submission.

``App`` connects lazily, so a module can declare ``app = App(url)`` and
decorate its tasks at import time without a server being up.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from engine import (
    checks,
    events,
    executions,
    metrics,
    refs,
    signals,
    wantoutbox,  # noqa: F401 - registers the want message kinds this process applies
    wants,
)
from engine.client import Client
from engine.codec import DEFAULT_MAX_PAYLOAD_BYTES
from engine.dispatcher import dispatch
from engine.errors import ContractError
from engine.flowrun import FlowRun
from engine.flows import DEFAULT_MAX_STEPS, FlowBuilder
from engine.handle import Handle, read_execution
from engine.hints import hint_commands
from engine.policy import Retry
from engine.router import Routable
from keys import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS, new_id, partition_of_key

DEFAULT_LANE = "default"
MAX_IDEMPOTENCY_KEY = 200
SUBMIT_GROUP = 50  # consecutive submit_many items placed in one partition (one exec_submit_many)
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024  # lua/20_executions.lua refuses larger payloads


@dataclass(frozen=True)
class TaskDef:
    """A registered handler and its defaults."""

    name: str
    fn: Callable[..., Any]
    retry: Retry = field(default_factory=Retry)
    lane: str = DEFAULT_LANE
    priority: int = 0
    deadline_s: float | None = None

    @functools.cached_property
    def is_async(self) -> bool:
        """Whether ``fn`` is an ``async def`` (asked for every execution a worker starts)."""
        return inspect.iscoroutinefunction(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _retry(value: Any) -> Retry:
    if not isinstance(value, Retry):
        raise ContractError(f"retry must be a Retry, got {value!r}")
    return value


def _deadline_ms(value: Any) -> int:
    """A deadline of at least 1 ms (below that it would round to "no deadline")."""
    return checks.seconds_to_ms(value, "deadline_s", minimum=checks.MIN_DEADLINE_S)


class App:
    """Registry of tasks plus a lazily connected client."""

    def __init__(self, url: str | None = None, *, namespace: str | None = None,
                 partitions: int | None = None, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
                 default_lane: str = DEFAULT_LANE, client: Client | None = None) -> None:
        self.url = url
        # Whether the App chose its namespace / partition count itself: `flowslot worker`
        # then keeps them, and refuses a flag that names another deployment.
        self.namespace_explicit = namespace is not None
        self.partitions_explicit = partitions is not None
        self.namespace: str = DEFAULT_NAMESPACE if namespace is None else namespace
        self.partitions: int = DEFAULT_PARTITIONS if partitions is None else partitions
        if url is not None:
            checks.text(url, "url", allow_empty=True)  # "": $FLOWSLOT_URL or the embedded cluster
        self.max_payload_bytes = checks.integer(max_payload_bytes, "max_payload_bytes", minimum=1,
                                                maximum=MAX_PAYLOAD_LIMIT)
        self.default_lane = checks.lane(default_lane)
        if client is not None and not isinstance(client, Client):
            raise ContractError(f"client must be an engine.client.Client, got {type(client).__name__}")
        self.tasks: dict[str, TaskDef] = {}
        self.producers: list[wants.Producer] = []
        self.breach_task: TaskDef | None = None
        self._client = client
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(self.url, namespace=self.namespace,
                                          partitions=self.partitions)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- registration ----------------------------------------------------
    @overload
    def task(self, fn: Callable[..., Any], *, name: str | None = None, retry: Retry | None = None,
             lane: str | None = None, priority: int = 0, deadline_s: float | None = None) -> TaskDef: ...

    @overload
    def task(self, fn: None = None, *, name: str | None = None, retry: Retry | None = None,
             lane: str | None = None, priority: int = 0,
             deadline_s: float | None = None) -> Callable[[Callable[..., Any]], TaskDef]: ...

    def task(self, fn: Callable[..., Any] | None = None, *, name: str | None = None,
             retry: Retry | None = None, lane: str | None = None, priority: int = 0,
             deadline_s: float | None = None) -> TaskDef | Callable[[Callable[..., Any]], TaskDef]:
        """Register a handler (plain or ``async def``); usable with or without arguments."""

        def register(f: Callable[..., Any]) -> TaskDef:
            if not callable(f):
                raise ContractError(f"a task is a function, got {f!r}")
            default_name = f"{getattr(f, '__module__', None)}.{getattr(f, '__qualname__', repr(f))}"
            task_name = checks.task_name(default_name if name is None else name)
            if task_name in self.tasks and self.tasks[task_name].fn is not f:
                raise ContractError(f"task name {task_name!r} is already registered")
            _deadline_ms(deadline_s)
            definition = TaskDef(task_name, f, Retry() if retry is None else _retry(retry),
                                 checks.lane(self.default_lane if lane is None else lane),
                                 checks.priority(priority), deadline_s)
            self.tasks[task_name] = definition
            return definition

        return register(fn) if fn is not None else register

    def produces(self, pattern: str, *, name: str | None = None, retry: Retry | None = None,
                 lane: str | None = None, priority: int = 0,
                 deadline_s: float | None = None) -> Callable[[Callable[..., Any]], TaskDef]:
        """Register a producer: a task that builds every data slice matching ``pattern``
        (``"clean/{date}"``); its handler receives the fields as keyword arguments
        (``date="2026-11-21"``) and may raise ``MissingDependencies([...])``."""
        regex = wants.compile_pattern(pattern)

        def register(f: Callable[..., Any]) -> TaskDef:
            definition = self.task(f, name=name, retry=retry, lane=lane, priority=priority,
                                   deadline_s=deadline_s)
            self.producers.append(wants.Producer(pattern, regex, definition))
            return definition

        return register

    def on_sla_breach(self, fn: Callable[..., Any]) -> TaskDef:
        """Register the task run once for each want that misses its SLA; it gets the want id."""
        self.breach_task = self.task(fn)
        return self.breach_task

    def want(self, slices: Sequence[str], *, data_timestamp: Any = None, sla_s: float | None = None,
             ttl_s: float | None = None, source: str = "api", comment: str = "",
             force: bool = False) -> str:
        """Want data slices built (``want_create``); returns the want id (a UUID) at once.

        A live slice counts at once; a slice being built is waited for; any other gets one
        build by its producer (``force=True`` rebuilds a live one). ``sla_s`` and ``ttl_s``
        count from ``data_timestamp`` (a datetime, a date, or epoch seconds): past the SLA the
        want is flagged breached, past the TTL it expires.
        """
        return wants.want(self, slices, self._dispatch, data_timestamp=data_timestamp, sla_s=sla_s, ttl_s=ttl_s,
                          source=source, comment=comment, force=force)

    def cancel_want(self, want_id: str, reason: str = "canceled") -> str:
        """Cancel a want that has not ended (``want_cancel``); returns the state it was in."""
        checks.reason(reason)
        reply = self.client.run(wants.cancel_call(self.client.keys, want_id, reason))
        wants.follow(self.client, [(wants.want_partition(self.client.keys, want_id), reply)], self._dispatch)
        return str(reply.outcome)

    def _dispatch(self, execution_ids: list[str]) -> None:
        dispatch(self.client, execution_ids)

    def invalidate(self, slice_name: str, reason: str = "invalidated") -> str:
        """Make a live or failed slice missing again (``slice_invalidate``), so the next want
        builds it; returns the state it was in. A slice being built is refused (InvalidState)."""
        checks.reason(reason)
        return str(self.client.run(wants.invalidate_call(self.client.keys, wants.check_slice(slice_name),
                                                          reason)))

    def slice(self, slice_name: str) -> dict[str, str]:
        """A data slice's record: ``state`` (missing, building, live, failed), ``build`` (the
        execution building it), ``live_ms``, and ``root`` / ``error`` when it failed."""
        return wants.slice_record(self.client, slice_name)

    def want_status(self, want_id: str) -> dict[str, Any]:
        """A want's record: ``state``, ``reason`` once it ended, and ``known`` (slice → what it
        knows of it: requested, building, live, failed)."""
        return wants.want_record(self.client, want_id)

    def _resolve(self, task: TaskDef | str | Callable[..., Any]) -> TaskDef:
        if isinstance(task, TaskDef):
            return task
        if isinstance(task, str):
            return self.tasks.get(task) or TaskDef(checks.task_name(task), _unregistered)
        for definition in self.tasks.values():
            if definition.fn is task:
                return definition
        raise ContractError(f"{task!r} is not a registered task; decorate it with @app.task")

    # -- submission ------------------------------------------------------
    def prepare(self, task: TaskDef | str | Callable[..., Any], args: Sequence[Any] = (),
                kwargs: dict[str, Any] | None = None, *, lane: str | None = None,
                priority: int | None = None, delay_s: float | None = None,
                deadline_s: float | None = None, idempotency_key: str | None = None,
                retry: Retry | None = None, partition: int | None = None,
                allow_refs: bool = False) -> tuple[executions.SubmitSpec, int]:
        """Validate and encode one submission; raises before anything is written.

        ``allow_refs``: a flow step's arguments may hold references (``engine/refs.py``).
        """
        definition = self._resolve(task)
        policy = _retry(definition.retry if retry is None else retry)
        args = checks.arguments(args, "args")
        kwargs = checks.keyword_arguments(kwargs)
        found = refs.find(args, kwargs)
        if found and not allow_refs:
            raise ContractError(f"{refs.shown(found[0][0])} is a step reference: references are "
                                "arguments of flow steps only")
        payload = refs.encode_payload(args, kwargs, found, limit_bytes=self.max_payload_bytes,
                                      what=f"payload of {definition.name}")
        if idempotency_key is not None:
            checks.text(idempotency_key, "idempotency_key", max_chars=MAX_IDEMPOTENCY_KEY)
        lane = checks.lane(definition.lane if lane is None else lane)
        priority = checks.priority(definition.priority if priority is None else priority)
        delay_ms = checks.seconds_to_ms(delay_s, "delay_s")
        deadline_in_ms = _deadline_ms(definition.deadline_s if deadline_s is None else deadline_s)
        # Everything the caller passed is checked: only now connect (lazily) for the partition count.
        partitions = self.client.keys.partitions
        if partition is None:  # flow steps pass their flow's partition
            partition = (partition_of_key(idempotency_key, partitions) if idempotency_key
                         else self._random_partition())
        checks.integer(partition, "partition", minimum=0, maximum=partitions - 1)
        spec = executions.SubmitSpec(
            execution_id=new_id("e", partition),
            task=definition.name,
            lane=lane,
            payload=payload,
            priority=priority,
            delay_ms=delay_ms,
            max_attempts=policy.max_attempts,
            backoff_ms=int(policy.backoff_s * 1000),
            backoff_max_ms=int(policy.backoff_max_s * 1000),
            deadline_in_ms=deadline_in_ms,
            idempotency_key=idempotency_key,
        )
        return spec, partition

    def submit(self, task: TaskDef | str | Callable[..., Any], *args: Any,
               kwargs: dict[str, Any] | None = None, **options: Any) -> Handle:
        """Submit one execution (``exec_submit``), then hint it if it is ready."""
        return self._submit_prepared([self._prepare_options(task, args, kwargs, options)])[0]

    def submit_many(self, task: TaskDef | str | Callable[..., Any],
                    arg_list: Iterable[Sequence[Any]], **options: Any) -> list[Handle]:
        """Submit many executions of one task, pipelined per node: two round trips in all.

        The items go out in several calls (one per partition group). When one fails (a node
        that does not answer), the first error is raised, and the items of the calls that
        succeeded stay written and run: the reconciler's hint repair wakes workers for them."""
        if isinstance(arg_list, (str, bytes, dict)) or not isinstance(arg_list, Iterable):
            raise ContractError(f"submit_many takes a list of argument tuples, got {arg_list!r}")
        prepared = []
        grouped = "partition" not in options and options.get("idempotency_key") is None
        for n, args in enumerate(arg_list):
            checks.arguments(args, f"item {n} of submit_many's list")
            item_options = options
            if grouped:  # SUBMIT_GROUP consecutive items share a partition: one exec_submit_many
                if n % SUBMIT_GROUP == 0:
                    group_options = dict(options, partition=self._random_partition())
                item_options = group_options
            prepared.append(self._prepare_options(task, args, None, item_options))
        return self._submit_prepared(prepared)

    def _prepare_options(self, task: TaskDef | str | Callable[..., Any], args: Sequence[Any],
                         kwargs: dict[str, Any] | None, options: dict[str, Any]) -> tuple[executions.SubmitSpec, int]:
        """``prepare`` with the caller's options; an unknown option is a ContractError too."""
        try:
            return self.prepare(task, args, kwargs, **options)
        except TypeError as e:
            raise ContractError(f"submit options: {e}") from e

    def _submit_prepared(self, prepared: list[tuple[executions.SubmitSpec, int]]) -> list[Handle]:
        ks = self.client.keys
        replies = self._run_submits(prepared)
        handles, ready = [], []
        for (spec, partition), reply in zip(prepared, replies, strict=False):
            if isinstance(reply, Exception):
                raise reply
            handles.append(Handle(self.client, reply.id, reply.created))
            if reply.created:
                metrics.EXECUTIONS.labels("submitted", spec.lane).inc()
            if reply.state == "ready" and reply.created:
                ready.append((partition, spec.lane))
        if ready:
            self.client.run_many(hint_commands(ks, ready))
        return handles

    def _run_submits(self, prepared: list[tuple[executions.SubmitSpec, int]]) -> list[Any]:
        """One pipelined round: ``exec_submit_many`` per partition for the submissions without an
        idempotency key (up to ``SUBMIT_MANY_MAX`` a call), ``exec_submit`` for a lone one and
        for each with a key. Replies (or exceptions) in ``prepared``'s order."""
        ks = self.client.keys
        by_partition: dict[int, list[int]] = {}
        for n, (spec, partition) in enumerate(prepared):
            if spec.idempotency_key is None:
                by_partition.setdefault(partition, []).append(n)
        calls: list[Routable] = []
        placed: list[tuple[list[int], bool]] = []  # the submissions of each call; a batch?
        batched: set[int] = set()
        for partition, indexes in by_partition.items():
            if len(indexes) < 2:
                continue
            for start in range(0, len(indexes), executions.SUBMIT_MANY_MAX):
                chunk = indexes[start:start + executions.SUBMIT_MANY_MAX]
                calls.append(executions.submit_many(ks, partition, [prepared[i][0] for i in chunk]))
                placed.append((chunk, True))
                batched.update(chunk)
        for n, (spec, partition) in enumerate(prepared):
            if n not in batched:
                calls.append(executions.submit(ks, spec, partition))
                placed.append(([n], False))
        replies: list[Any] = [None] * len(prepared)
        for (indexes, batch), reply in zip(placed, self.client.run_many(calls), strict=True):
            for i, n in enumerate(indexes):
                replies[n] = reply[i] if batch and not isinstance(reply, Exception) else reply
        return replies

    def _random_partition(self) -> int:
        return random.randrange(self.client.keys.partitions)

    # -- flows -----------------------------------------------------------
    def flow(self, name: str, labels: dict[str, str] | None = None, *,
             max_steps: int = DEFAULT_MAX_STEPS, correlate: dict[str, str] | None = None) -> FlowBuilder:
        """Start building a flow (a DAG of steps); ``.submit()`` writes it. ``correlate``
        is the correlation its wait steps wait on (see ``FlowBuilder.wait``)."""
        return FlowBuilder(self, name, labels, checks.integer(max_steps, "max_steps", minimum=1,
                                                              maximum=DEFAULT_MAX_STEPS * 100), correlate)

    def deliver(self, event: str, correlate: dict[str, str], payload: Any = None, *,
                event_id: str | None = None,
                buffer_ttl_s: float = events.DEFAULT_BUFFER_TTL_S) -> events.Delivery:
        """Deliver an event (``event_deliver``): every step waiting for ``event`` with exactly
        this correlation succeeds with ``payload`` as its result; when none waits yet, the
        event is kept ``buffer_ttl_s`` for the first wait that registers. The same
        ``event_id`` is applied once (remembered 24 h)."""
        return events.deliver(self.client, event, correlate, payload, event_id=event_id,
                              buffer_ttl_s=buffer_ttl_s, max_payload_bytes=self.max_payload_bytes)

    def signal(self, token: str, payload: Any = None) -> str:
        """Complete the wait a token names with ``payload``; returns the execution id.

        A flow wait step's token (``run.token(step)``): the step succeeds with ``payload``
        as its result (``wait_signal``) and its children are dispatched. A suspended
        handler's token (``current_task().token(name)``): the payload is stored under
        ``name`` and the execution runs again (``exec_signal``), or keeps it for its
        ``wait_for(name)`` when it is not suspended yet.

        A forged, altered, expired, other-namespace or retired token raises ``BadToken``; a
        step that is not waiting raises ``InvalidState`` (a canceled flow's waits too), except
        a repeat of the signal that resumed it, with the same payload, which returns the same
        id again and writes nothing. A refused signal writes nothing.
        """
        return signals.signal(self.client, token, payload, max_payload_bytes=self.max_payload_bytes).execution_id

    def run(self, flow_id: str) -> FlowRun:
        """A handle on a submitted flow."""
        run = FlowRun(self, flow_id)
        run.status()  # NotFound / ContractError now rather than later
        return run

    # -- inspection ------------------------------------------------------
    def handle(self, execution_id: str) -> Handle:
        read_execution(self.client, execution_id)
        return Handle(self.client, execution_id, created=False)

    def cancel(self, execution_id: str, reason: str = "canceled") -> str:
        return Handle(self.client, execution_id, created=False).cancel(reason)


def _unregistered(*args: Any, **kwargs: Any) -> Any:
    raise ContractError("this task is not registered in this process")
