"""The recorder: outcomes recorded in one round per batch, and each reply mapped to the
worker's stats, hints, promotions and dispatch (fakeredis with the real Lua library)."""

from __future__ import annotations

import logging
import threading

from engine import App
from engine import executions as X
from engine.context import TaskContext
from engine.dispatcher import dispatch
from engine.held import Held, HeldLeases
from engine.recorder import Handoff, Outcome, Recorder, WorkerStats
from engine.router import Command
from keys import new_id
from tests.conftest import fake_client
from tests.waiting import wait_until

P = 4


class Follow:
    """The worker's side of the recorder: what it was asked to schedule and dispatch."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[int, int]] = []
        self.dispatched: list[str] = []

    def schedule(self, partition: int, delay_ms: int) -> None:
        self.scheduled.append((partition, delay_ms))

    def dispatch(self, execution_ids: list[str]) -> None:
        self.dispatched.extend(execution_ids)


def recorder_for(client):
    follow, held, stats = Follow(), HeldLeases(), WorkerStats()
    return Recorder(client, held, stats, follow.schedule, follow.dispatch), follow


def leased(client, *, max_attempts=3, backoff_ms=0, lane="default"):
    """Submit and claim one execution; return its claim."""
    eid = new_id("e", P)
    spec = X.SubmitSpec(eid, "t.task", lane, "{}", max_attempts=max_attempts, backoff_ms=backoff_ms,
                        backoff_max_ms=max(backoff_ms, 1) * 10)
    client.run(X.submit(client.keys, spec, P))
    claimed = client.run(X.claim(client.keys, P, lane, 1, 30_000, "w")).claimed
    assert [c.execution_id for c in claimed] == [eid]
    return claimed[0]


def state(client, eid):
    key = client.keys.execution(P, eid)
    return client.run(Command(("HGET", key, "state"), key))


def hinted(client, lane):
    key = client.keys.hint(lane, client.keys.hint_index(P))
    return [int(p) for p in client.run(Command(("LRANGE", key, 0, -1), key))]


def failure(claimed, retryable=True, lane="default"):
    return Outcome(claimed, lane, False, kind="ValueError", message="bad input\ntraceback", retryable=retryable)


def test_a_success_is_stored_counted_and_its_lease_forgotten(namespace):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    claimed = leased(client)
    recorder.held.add(Held(claimed, "default", TaskContext(claimed.execution_id, 1, 0, None)))
    recorder.record([Outcome(claimed, "default", True, result="42")])
    assert state(client, claimed.execution_id) == "succeeded"
    assert (recorder.stats.succeeded, recorder.stats.failed, recorder.stats.retried) == (1, 0, 0)
    assert recorder.held.running() == []
    assert (follow.scheduled, follow.dispatched) == ([], [])


def test_a_retry_made_ready_is_hinted_and_counted_as_retried(namespace, caplog):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    claimed = leased(client, lane="images")
    with caplog.at_level(logging.WARNING, logger="flowslot.worker"):
        recorder.record([failure(claimed, lane="images")])
    assert state(client, claimed.execution_id) == "ready"
    assert recorder.stats.retried == 1
    assert hinted(client, "images") == [P]
    assert follow.scheduled == []
    assert "attempt 1 failed: ValueError: bad input (retry now)" in caplog.text


def test_a_retry_with_back_off_schedules_a_promotion_after_the_replys_delay(namespace, caplog):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    claimed = leased(client, backoff_ms=10_000)
    with caplog.at_level(logging.WARNING, logger="flowslot.worker"):
        recorder.record([failure(claimed)])
    assert state(client, claimed.execution_id) == "delayed"
    assert recorder.stats.retried == 1
    assert hinted(client, "default") == []
    [(partition, delay_ms)] = follow.scheduled
    assert partition == P and 5_000 <= delay_ms <= 10_000  # half the back-off plus jitter
    assert f"(retry in {delay_ms / 1000:g} s)" in caplog.text


def test_the_last_attempt_fails_for_good_with_no_hint_and_no_promotion(namespace, caplog):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    claimed = leased(client, max_attempts=1)
    with caplog.at_level(logging.WARNING, logger="flowslot.worker"):
        recorder.record([failure(claimed)])
    assert state(client, claimed.execution_id) == "failed"
    assert (recorder.stats.failed, recorder.stats.retried) == (1, 0)
    assert (hinted(client, "default"), follow.scheduled) == ([], [])
    assert "(failed)" in caplog.text


def test_a_finished_flow_step_with_children_is_dispatched(namespace):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    flow = App(client=client).flow("two")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", a.ref())
    run = flow.submit()
    [claimed] = client.run(X.claim(client.keys, run.partition, "default", 10, 30_000, "w")).claimed
    recorder.record([Outcome(claimed, "default", True, result="1")])
    assert follow.dispatched == [claimed.execution_id]


class Slots:
    """The worker's handler slots as a handoff sees them."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.started: list[tuple[str, str]] = []

    def reserve(self, n: int) -> int:
        taken = min(n, self.free)
        self.free -= taken
        return taken

    def unreserve(self, n: int) -> None:
        self.free += n

    def start(self, claimed, lane) -> None:
        self.started.append((claimed.step, lane))


def hints_of(client, run):
    key = client.keys.hint("default", client.keys.hint_index(run.partition))
    return sorted(int(p) for p in client.run(Command(("LRANGE", key, 0, -1), key)))


def two_step_flow(client):
    flow = App(client=client).flow("two")
    a = flow.step("a", "t.a")
    flow.step("b", "t.b", a.ref())
    run = flow.submit()
    [claimed] = client.run(X.claim(client.keys, run.partition, "default", 10, 30_000, "w")).claimed
    return run, claimed


def test_with_a_handoff_a_flow_steps_child_starts_from_the_completions_reply(namespace):
    client = fake_client(namespace)
    follow, slots = Follow(), Slots(free=4)
    recorder = Recorder(client, HeldLeases(), WorkerStats(), follow.schedule, follow.dispatch,
                        handoff=Handoff("w", ["default"], 30_000, slots.reserve, slots.start, slots.unreserve))
    run, claimed = two_step_flow(client)
    before = hints_of(client, run)
    recorder.record([Outcome(claimed, "default", True, result="1")])
    assert slots.started == [("b", "default")]
    assert slots.free == 3  # the child holds one slot, the others came back
    assert follow.dispatched == [] and hints_of(client, run) == before
    assert recorder.stats.succeeded == 1


def test_with_a_handoff_and_no_free_slot_the_ready_child_is_hinted(namespace):
    client = fake_client(namespace)
    follow, slots = Follow(), Slots(free=0)
    recorder = Recorder(client, HeldLeases(), WorkerStats(), follow.schedule, follow.dispatch,
                        handoff=Handoff("w", ["default"], 30_000, slots.reserve, slots.start, slots.unreserve))
    run, claimed = two_step_flow(client)
    before = hints_of(client, run)
    recorder.record([Outcome(claimed, "default", True, result="1")])
    assert slots.started == [] and slots.free == 0
    assert hints_of(client, run) == [*before, run.partition]


def test_a_refused_outcome_is_dropped_uncounted(namespace, caplog):
    client = fake_client(namespace)
    recorder, follow = recorder_for(client)
    claimed = leased(client)
    stale = claimed._replace(token="999")
    with caplog.at_level(logging.INFO, logger="flowslot.worker"):
        recorder.record([Outcome(stale, "default", True, result="1"), failure(stale)])
    assert state(client, claimed.execution_id) == "leased"
    assert (recorder.stats.succeeded, recorder.stats.failed, recorder.stats.retried) == (0, 0, 0)
    assert f"result of {claimed.execution_id} not recorded" in caplog.text
    assert "(not recorded: " in caplog.text
    assert (follow.scheduled, follow.dispatched) == ([], [])


def test_run_records_every_queued_outcome_in_batches_then_returns_on_close(namespace):
    client = fake_client(namespace)
    recorder, _ = recorder_for(client)
    claims = [leased(client) for _ in range(3)]
    batches = []
    record = recorder.record
    recorder.record = lambda batch: (batches.append(len(batch)), record(batch))  # type: ignore[method-assign]
    for claimed in claims:
        recorder.put(Outcome(claimed, "default", True, result="1"))
    recorder.close()
    recorder.run()
    assert batches == [3]
    assert [state(client, c.execution_id) for c in claims] == ["succeeded"] * 3


def test_record_now_records_on_the_callers_thread_when_the_recorder_is_idle(namespace):
    client = fake_client(namespace)
    recorder, _ = recorder_for(client)
    claimed = leased(client)
    assert recorder.record_now(Outcome(claimed, "default", True, result="1"))
    assert state(client, claimed.execution_id) == "succeeded" and recorder.stats.succeeded == 1


def test_record_now_declines_while_outcomes_wait_or_another_thread_records(namespace):
    client = fake_client(namespace)
    recorder, _ = recorder_for(client)
    first, second = leased(client), leased(client)
    recorder.put(Outcome(first, "default", True, result="1"))
    assert not recorder.record_now(Outcome(second, "default", True, result="1"))  # would jump the queue
    recorder._outcomes.get()
    with recorder._recording:  # the recorder thread is recording a batch
        assert not recorder.record_now(Outcome(second, "default", True, result="1"))
    assert state(client, second.execution_id) == "leased"


class Recording:
    """A client that notes the functions of every pipelined round it runs."""

    def __init__(self, client) -> None:
        self.client, self.keys, self.rounds = client, client.keys, []

    def run_many(self, calls):
        self.rounds.append([getattr(c, "function", None) for c in calls])
        return self.client.run_many(calls)


def test_flow_steps_finished_together_are_recorded_in_one_call_that_starts_their_join(namespace):
    client = fake_client(namespace)
    follow, slots = Follow(), Slots(free=4)
    flow = App(client=client).flow("fan")
    root = flow.step("root", "t.a")
    middles = [flow.step(f"m{i}", "t.b", root.ref()) for i in range(3)]
    flow.step("join", "t.c", [m.ref() for m in middles])
    run = flow.submit()
    [root_claim] = client.run(X.claim(client.keys, run.partition, "default", 10, 30_000, "w")).claimed
    client.run(X.complete(client.keys, root_claim.execution_id, root_claim.token, "1"))
    dispatch(client, [root_claim.execution_id])
    claims = client.run(X.claim(client.keys, run.partition, "default", 10, 30_000, "w")).claimed
    assert sorted(c.step for c in claims) == ["m0", "m1", "m2"]
    recording = Recording(client)
    recorder = Recorder(recording, HeldLeases(), WorkerStats(), follow.schedule, follow.dispatch,
                        handoff=Handoff("w", ["default"], 30_000, slots.reserve, slots.start, slots.unreserve))
    recorder.record([Outcome(c, "default", True, result="2") for c in claims])
    assert recording.rounds == [["flow_complete_many"]]
    assert slots.started == [("join", "default")]
    assert slots.free == 3  # the join holds one slot, the others came back
    assert recorder.stats.succeeded == 3 and follow.dispatched == []


def count_rounds(client):
    """The pipelined rounds the client sends from now on, each as its commands' names."""
    rounds: list[list[str]] = []
    execute_many = client.router.execute_many

    def recorded(calls):
        rounds.append([str(c.command()[0]) for c in calls])
        return execute_many(calls)

    client.router.execute_many = recorded
    return rounds


def test_a_hint_held_for_the_next_batch_goes_out_in_that_batchs_round(namespace):
    client = fake_client(namespace)
    recorder, _ = recorder_for(client)
    claimed = leased(client)
    rounds = count_rounds(client)
    recorder.hint_soon([(P, "default")])
    recorder.put(Outcome(claimed, "default", True, result="1"))
    recorder.close()
    recorder.run()
    assert rounds == [["FCALL", "LPUSH", "LTRIM"]]  # the completion and the hint: one round
    assert hinted(client, "default") == [P]
    assert state(client, claimed.execution_id) == "succeeded"


def test_a_held_hint_with_no_outcome_to_ride_goes_out_alone(namespace):
    client = fake_client(namespace)
    recorder, _ = recorder_for(client)
    thread = threading.Thread(target=recorder.run)
    thread.start()
    try:
        recorder.hint_soon([(P, "default")])
        wait_until(lambda: hinted(client, "default") == [P], timeout_s=10)
    finally:
        recorder.close()
        thread.join(10)
    assert not thread.is_alive()


def test_a_worker_that_is_full_leaves_the_hint_for_work_its_claim_left_to_the_recorders_round(namespace):
    client = fake_client(namespace)
    app = App(client=client, namespace=namespace, partitions=client.keys.partitions)
    app.task(name="t.task")(lambda: None)
    from engine.worker import Worker
    worker = Worker(app, concurrency=1, promote_interval_s=None)
    for _ in range(2):
        leased_spec = X.SubmitSpec(new_id("e", P), "t.task", "default", "{}")
        client.run(X.submit(client.keys, leased_spec, P))
    held: list[tuple[int, str]] = []
    worker._recorder.hint_soon = held.extend  # type: ignore[method-assign]
    worker._record_inline = True  # as start() sets it: the recorder thread sends held hints
    worker._launch_many = lambda claimed, lane: None  # type: ignore[method-assign]
    rounds = count_rounds(client)
    worker._claim(P, "default")
    assert held == [(P, "default")]  # one execution left, no free slot: hinted by the recorder
    assert rounds == [["FCALL"]]  # the claim's own round carries nothing else, and none follows
