"""Property: any input to the public API either works or raises an EngineError, and an
error leaves the keyspace exactly as it was (fakeredis-backed Apps, one namespace per example)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import App, EngineError, Retry
from engine.client import Client
from engine.context import TaskContext
from engine.worker import Worker
from tests.conftest import TEST_PARTITIONS, fake_client, snapshot

EXAMPLES = settings(max_examples=60, deadline=None, database=None)

# -- values ------------------------------------------------------------------------------
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                   st.binary(max_size=6))
anything = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner),
                            st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner,
                                            max_size=3)),
    max_leaves=8)
texts = st.one_of(st.text(max_size=20), st.sampled_from(["a", "t.echo", "\ud800", "x" * 300, "ok\n"]))
lanes = st.one_of(st.sampled_from(["default", "images", "a.b-c_1", "bad lane!", "default\n", ""]),
                  anything)
seconds = st.one_of(st.none(), st.floats(), st.integers(-2, 10**12), st.sampled_from([0.0004, 0.001, 5]),
                    anything)
timeouts = st.one_of(st.none(), st.floats(), st.sampled_from([0, 0.01, 1e10, 10**400]), anything)
reasons = st.one_of(texts, anything)
tasks = st.one_of(st.sampled_from(["t.echo", "t.unregistered", ""]), texts, anything)
arg_tuples = st.one_of(st.lists(anything, max_size=3).map(tuple), anything)
kwargs_values = st.one_of(st.none(), st.dictionaries(st.text(max_size=4), anything, max_size=2), anything)
submit_options = st.fixed_dictionaries({}, optional={
    "lane": lanes, "priority": st.one_of(st.integers(-1, 300), anything), "delay_s": seconds,
    "deadline_s": seconds, "idempotency_key": st.one_of(texts, anything),
    "retry": st.one_of(st.just(Retry(max_attempts=1)), anything), "colour": anything})
step_options = st.fixed_dictionaries({}, optional={
    "lane": lanes, "priority": st.one_of(st.integers(-1, 300), anything), "deadline_s": seconds,
    "retry": st.one_of(st.just(Retry(max_attempts=1)), anything),
    "after": st.one_of(st.lists(texts, max_size=2), anything),
    "after_any": st.one_of(st.lists(texts, max_size=2), anything),
    "quorum": st.one_of(st.none(), st.integers(-1, 3), anything), "any_of": st.booleans(),
    "optional": st.booleans()})


# -- the system under test ---------------------------------------------------------------
@pytest.fixture(scope="module")
def server() -> fakeredis.FakeRedis:
    """One fake server with the library loaded; each example gets its own namespace on it."""
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    Client(redis_client=redis, namespace="setup", partitions=TEST_PARTITIONS)
    return redis


def fresh_app(server: fakeredis.FakeRedis) -> App:
    server.flushdb()  # keys only: the function library stays loaded
    client = Client(redis_client=server, namespace="p" + uuid.uuid4().hex[:10],
                    partitions=TEST_PARTITIONS, load_library=False)
    app = App(client=client)

    @app.task(name="t.echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return args

    return app


def works_or_refuses(app: App, call: Callable[[], object]) -> None:
    """The property: ``call`` returns, or raises an EngineError and writes nothing."""
    before = snapshot(app.client)
    try:
        call()
    except EngineError:
        assert snapshot(app.client) == before
    except Exception as e:  # noqa: BLE001 - the property is that nothing else escapes
        pytest.fail(f"{type(e).__name__} escaped the public API: {e!r}")


# -- properties --------------------------------------------------------------------------
@EXAMPLES
@given(task=tasks, args=arg_tuples, kwargs=kwargs_values, options=submit_options)
def test_submit_works_or_refuses_cleanly(server, task, args, kwargs, options):
    app = fresh_app(server)
    works_or_refuses(app, lambda: app.submit(task, *(args if isinstance(args, tuple) else (args,)),
                                             kwargs=kwargs, **options))


@EXAMPLES
@given(task=tasks, arg_list=st.one_of(st.lists(arg_tuples, max_size=3), anything), options=submit_options)
def test_submit_many_works_or_refuses_cleanly(server, task, arg_list, options):
    app = fresh_app(server)
    works_or_refuses(app, lambda: app.submit_many(task, arg_list, **options))


@EXAMPLES
@given(name=st.one_of(texts, anything), fn=st.one_of(st.just(len), anything), lane=lanes,
       priority=st.one_of(st.integers(-1, 300), anything), deadline_s=seconds,
       retry=st.one_of(st.none(), st.just(Retry()), anything),
       default_lane=lanes, max_payload_bytes=st.one_of(st.integers(-1, 2**27), anything),
       url=st.one_of(st.none(), anything))
def test_app_and_task_registration_work_or_refuse_cleanly(server, name, fn, lane, priority, deadline_s,
                                                          retry, default_lane, max_payload_bytes, url):
    app = fresh_app(server)
    works_or_refuses(app, lambda: app.task(fn, name=name, lane=lane, priority=priority,
                                           deadline_s=deadline_s, retry=retry))
    works_or_refuses(app, lambda: App(url, client=app.client, default_lane=default_lane,
                                      max_payload_bytes=max_payload_bytes))


@EXAMPLES
@given(name=st.one_of(texts, anything), labels=st.one_of(st.none(), st.dictionaries(texts, texts, max_size=2),
                                                         anything),
       steps=st.lists(st.tuples(texts, tasks, arg_tuples, kwargs_values, step_options), min_size=1, max_size=3))
def test_building_and_submitting_a_flow_works_or_refuses_cleanly(server, name, labels, steps):
    app = fresh_app(server)

    def build_and_submit() -> None:
        flow = app.flow(name, labels)
        for step_id, task, args, kwargs, options in steps:
            args = args if isinstance(args, tuple) else (args,)
            flow.step(step_id, task, *args, kwargs=kwargs, **options)
        flow.submit()

    works_or_refuses(app, build_and_submit)


@EXAMPLES
@given(reason=reasons, timeout=timeouts, step=st.one_of(st.just("a"), texts, anything),
       limit=st.one_of(st.integers(-1, 5), anything), some_id=st.one_of(texts, anything))
def test_handles_and_flow_runs_work_or_refuse_cleanly(server, reason, timeout, step, limit, some_id):
    app = fresh_app(server)
    handle = app.submit("t.echo", 1)
    handle.cancel()  # terminal: result() and wait() return at once
    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    run.cancel()
    for call in (lambda: handle.result(timeout=timeout), lambda: handle.cancel(reason),
                 lambda: run.result(step, timeout=timeout), lambda: run.step_execution(step),
                 lambda: run.wait(timeout=timeout), lambda: run.cancel(reason),
                 lambda: run.describe(timeline_limit=limit), lambda: run.timeline(limit),
                 lambda: app.handle(some_id), lambda: app.run(some_id),
                 lambda: app.cancel(some_id, reason)):
        works_or_refuses(app, call)


@EXAMPLES
@given(step_id=st.one_of(texts, anything), task=tasks, args=arg_tuples, kwargs=kwargs_values,
       options=step_options, lanes_=st.one_of(st.lists(lanes, max_size=2), anything))
def test_dynamic_steps_and_workers_work_or_refuse_cleanly(server, step_id, task, args, kwargs, options,
                                                          lanes_):
    app = fresh_app(server)
    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    # The context a worker gives the running step "a" (``worker`` only carries the App).
    context = TaskContext(run.step_execution("a"), 1, 0, worker=Worker(app, lanes=["default"]),
                          flow_id=run.id, step_id="a")
    args = args if isinstance(args, tuple) else (args,)
    works_or_refuses(app, lambda: context.add_step(step_id, task, *args, kwargs=kwargs, **options))
    works_or_refuses(app, lambda: Worker(app, lanes=lanes_))


@EXAMPLES
@given(namespace=st.one_of(st.sampled_from(["fs", "ok-ns", "a{b}", "a:b", "ns\n"]), texts, anything),
       partitions=st.one_of(st.integers(-1, 20000), anything),
       hint_lists=st.one_of(st.integers(-1, 20), anything))
def test_connect_works_or_refuses_cleanly(namespace, partitions, hint_lists):
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        Client(redis_client=redis, namespace=namespace, partitions=partitions, hint_lists=hint_lists,
               load_library=False)
    except EngineError:
        assert redis.keys("*") == []
    except Exception as e:  # noqa: BLE001 - the property is that nothing else escapes
        pytest.fail(f"{type(e).__name__} escaped connect: {e!r}")


def test_the_fake_client_the_properties_use_is_a_working_app(namespace):
    """The properties above are not vacuous: a plain submit on the same setup is written."""
    app = App(client=fake_client(namespace))
    before = snapshot(app.client)
    app.submit("t.echo", 1)
    assert snapshot(app.client) != before
