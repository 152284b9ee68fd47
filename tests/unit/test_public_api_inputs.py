"""Every input the public API refuses is a flowslot error raised before anything is written."""

from __future__ import annotations

import pytest

from engine import App, ContractError
from tests.conftest import fake_client, snapshot


@pytest.fixture
def app(namespace):
    client = fake_client(namespace)
    app = App(client=client, namespace=namespace, partitions=client.keys.partitions)

    @app.task(name="t.echo")
    def echo(value=None):
        return value

    return app


def refused(app, call, match=None):
    """``call`` raises ContractError (naming ``match``) and leaves the keyspace as it was."""
    before = snapshot(app.client)
    with pytest.raises(ContractError, match=match):
        call()
    assert snapshot(app.client) == before


@pytest.mark.parametrize("reason", [None, 42, b"bytes", "\ud800", "x" * 5000])
def test_a_cancel_reason_must_be_short_valid_text(app, reason):
    handle = app.submit("t.echo", 1)
    refused(app, lambda: handle.cancel(reason), "cancel reason")
    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    refused(app, lambda: run.cancel(reason), "cancel reason")


@pytest.mark.parametrize("name", ["", "\ud800", "t" * 257, "é" * 129])
def test_a_task_name_must_be_valid_text_of_at_most_256_bytes(app, name):
    refused(app, lambda: app.submit(name), "task name")
    refused(app, lambda: app.task(lambda: None, name=name), "task name")
    flow = app.flow("f")
    refused(app, lambda: flow.step("a", name), "task name")


@pytest.mark.parametrize("name", ["", None, 7, "\ud800", "n" * 201, "n" * 2_000_000])
def test_a_flow_name_must_be_valid_text_of_at_most_200_characters(app, name):
    refused(app, lambda: app.flow(name), "flow name")


@pytest.mark.parametrize("labels, match", [
    ("team=bi", "labels must be a dict"),
    (["team"], "labels must be a dict"),
    ({1: "bi"}, "label name"),
    ({"team": 1}, "label 'team'"),
    ({"team": None}, "label 'team'"),
    ({"\ud800": "x"}, "label name"),
    ({"team": "x" * 1001}, "label 'team'"),
    ({f"k{i}": "v" for i in range(65)}, "at most 64 labels"),
])
def test_flow_labels_must_be_a_small_dict_of_text(app, labels, match):
    refused(app, lambda: app.flow("f", labels), match)


@pytest.mark.parametrize("step", [None, 1, ["a"], "", "\ud800", "s" * 201])
def test_a_step_name_must_be_valid_text(app, step):
    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    refused(app, lambda: run.result(step, timeout=1), "step id")
    refused(app, lambda: run.step_execution(step), "step id")
    refused(app, lambda: app.flow("g").step(step, "t.echo"), "step id")


@pytest.mark.parametrize("key", ["\ud800", 5, "k" * 201])
def test_an_idempotency_key_must_be_valid_text(app, key):
    refused(app, lambda: app.submit("t.echo", 1, idempotency_key=key), "idempotency_key")


# -- item 10: every refused input is a ContractError ---------------------------------------
BAD_LANES = ["", "bad lane!", "default\n", "x" * 65, "{tag}", "a:b", 5, "\ud800"]  # None: the default lane


@pytest.mark.parametrize("lane", BAD_LANES)
def test_a_bad_lane_is_refused_wherever_a_lane_is_given(app, lane):
    refused(app, lambda: app.task(lambda: None, name="t.other", lane=lane), "invalid lane")
    refused(app, lambda: App(client=app.client, default_lane=lane), "invalid lane")
    refused(app, lambda: app.submit("t.echo", 1, lane=lane), "invalid lane")
    refused(app, lambda: app.submit_many("t.echo", [(1,), (2,)], lane=lane), "invalid lane")
    refused(app, lambda: app.flow("f").step("a", "t.echo", lane=lane), "invalid lane")


@pytest.mark.parametrize("lanes", [["bad lane!"], ["default\n"], "default", [], 7])
def test_a_worker_refuses_bad_lanes(app, lanes):
    from engine.worker import Worker

    refused(app, lambda: Worker(app, lanes=lanes), "lane")


@pytest.mark.parametrize("bad_id", ["e_0001_0190f3c2a1b4c7d2e9f\n", None, 12])
def test_an_id_with_a_trailing_newline_or_of_another_type_is_refused(app, bad_id):
    refused(app, lambda: app.handle(bad_id), "id")
    refused(app, lambda: app.run(bad_id), "id")


def test_a_malformed_flow_id_is_refused_with_the_shape_of_a_flow_id(app):
    refused(app, lambda: app.run("nope"), r"expected like 'f_00a3_'")
    refused(app, lambda: app.handle("nope"), r"expected like 'e_00a3_'")


@pytest.mark.parametrize("partitions", [1, 2, 3])
def test_a_deployment_of_fewer_partitions_than_hint_lists_connects_and_takes_work(namespace, partitions):
    client = fake_client(namespace, partitions)
    app = App(client=client, namespace=namespace, partitions=partitions)
    app.task(name="t.echo")(lambda value=None: value)
    assert app.submit("t.echo", 1).state().value == "ready"
    assert client.keys.hint_lists == partitions  # each hint list on a partition of its own


@pytest.mark.parametrize("options, match", [
    ({"namespace": "a{b}"}, "invalid namespace"),
    ({"namespace": "ns\n"}, "invalid namespace"),
    ({"namespace": "a b"}, "invalid namespace"),
    ({"namespace": ""}, "invalid namespace"),
    ({"namespace": None}, "invalid namespace"),
    ({"partitions": 0}, "partition count"),
    ({"partitions": 16385}, "partition count"),
    ({"partitions": "16"}, "partition count"),
    ({"partitions": True}, "partition count"),
    ({"hint_lists": "4"}, "hint_lists"),
])
def test_a_bad_namespace_or_partition_count_is_refused_at_connect(options, match):
    import fakeredis

    from engine.client import Client

    server = fakeredis.FakeRedis(decode_responses=True)
    with pytest.raises(ContractError, match=match):
        Client(redis_client=server, **options)
    assert server.keys("*") == []


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://localhost:notaport", "nonsense://x"])
def test_a_url_redis_cannot_use_is_refused_at_connect(url):
    from engine.client import connect

    with pytest.raises(ContractError, match="cannot connect"):
        connect(url)


@pytest.mark.parametrize("url", [42, b"redis://localhost", ["redis://x"]])
def test_a_url_that_is_not_a_string_is_refused(url):
    from engine.client import connect

    with pytest.raises(ContractError, match="url"):
        connect(url)
    with pytest.raises(ContractError, match="url"):
        App(url)


def test_a_server_that_does_not_answer_is_cluster_unavailable():
    from engine import ClusterUnavailable
    from engine.client import connect

    with pytest.raises(ClusterUnavailable):
        connect("redis://127.0.0.1:1")


@pytest.mark.parametrize("value", [0, -1, 64 * 1024 * 1024 + 1, 1.5, "1024", True])
def test_max_payload_bytes_must_be_a_positive_integer_within_the_servers_limit(app, value):
    refused(app, lambda: App(client=app.client, max_payload_bytes=value), "max_payload_bytes")


@pytest.mark.parametrize("arg_list, match", [
    (5, "list of argument tuples"),
    ("abc", "list of argument tuples"),
    (None, "list of argument tuples"),
    ([1, 2], "item 0"),
    ([(1,), "ab"], "item 1"),
])
def test_submit_many_takes_a_list_of_argument_tuples(app, arg_list, match):
    refused(app, lambda: app.submit_many("t.echo", arg_list), match)


NOT_SECONDS = [float("nan"), float("inf"), float("-inf"), -1, "5", True, 1e11, 10**400]


@pytest.mark.parametrize("value", NOT_SECONDS)
def test_delay_and_deadline_must_be_finite_seconds(app, value):
    refused(app, lambda: app.submit("t.echo", 1, delay_s=value), "delay_s")
    refused(app, lambda: app.submit_many("t.echo", [(1,)], delay_s=value), "delay_s")
    refused(app, lambda: app.submit("t.echo", 1, deadline_s=value), "deadline_s")
    refused(app, lambda: app.task(lambda: None, name="t.d", deadline_s=value), "deadline_s")
    refused(app, lambda: app.flow("f").step("a", "t.echo", deadline_s=value), "deadline_s")


@pytest.mark.parametrize("value", [0, 0.0004, 0.0009])
def test_a_deadline_below_one_millisecond_is_refused_rather_than_ignored(app, value):
    refused(app, lambda: app.submit("t.echo", 1, deadline_s=value), "deadline_s")


def test_a_one_millisecond_deadline_is_kept(app):
    handle = app.submit("t.echo", 1, deadline_s=0.001)
    assert int(handle.info()["deadline_ms"]) > int(handle.info()["created_ms"])


@pytest.mark.parametrize("kwargs, match", [
    ([1, 2], "kwargs must be a dict"),
    ("a=1", "kwargs must be a dict"),
    ({1: "a"}, "kwargs keys must be strings"),
])
def test_kwargs_must_be_a_dict_with_string_keys(app, kwargs, match):
    refused(app, lambda: app.submit("t.echo", kwargs=kwargs), match)
    refused(app, lambda: app.flow("f").step("a", "t.echo", kwargs=kwargs), match)


@pytest.mark.parametrize("after", [float("-inf"), 3, "a", {"a": 1}])
def test_after_and_after_any_must_be_lists(app, after):
    flow = app.flow("f")
    flow.step("a", "t.echo")
    refused(app, lambda: flow.step("b", "t.echo", after=after), "after must be a list")
    refused(app, lambda: flow.step("b", "t.echo", after_any=after), "after_any must be a list")


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 1e10, -1, "5", True])
def test_a_wait_timeout_must_be_finite_and_at_most_1e7_seconds(app, timeout):
    handle = app.submit("t.echo", 1)
    handle.cancel()
    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    run.cancel()
    refused(app, lambda: handle.result(timeout=timeout), "timeout")
    refused(app, lambda: run.result("a", timeout=timeout), "timeout")
    refused(app, lambda: run.wait(timeout=timeout), "timeout")


def test_deeply_nested_arguments_are_not_serializable(app):
    from engine import NotSerializable

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    refused(app, lambda: app.submit("t.echo", deep), "nested")
    refused(app, lambda: app.flow("f").step("a", "t.echo", {"k": deep}), "nested")
    with pytest.raises(NotSerializable):
        app.submit("t.echo", deep)


@pytest.mark.parametrize("options, match", [
    ({"priority": True}, "priority"),
    ({"priority": 10**400}, "priority"),
    ({"retry": 3}, "retry"),
    ({"quorum": True}, "quorum"),
    ({"quorum": 0}, "quorum"),
])
def test_bad_step_options_are_refused_when_the_step_is_added(app, options, match):
    flow = app.flow("f")
    flow.step("a", "t.echo")
    refused(app, lambda: flow.step("b", "t.echo", after=["a"], **options), match)


@pytest.mark.parametrize("options, match", [
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": "10"}, "max_steps"),
])
def test_flow_max_steps_must_be_a_positive_integer(app, options, match):
    refused(app, lambda: app.flow("f", **options), match)


@pytest.mark.parametrize("task_options, match", [
    ({"fn": 5}, "a task is a function"),
    ({"retry": "three"}, "retry must be a Retry"),
    ({"priority": 300}, "priority"),
])
def test_bad_task_registrations_are_refused(app, task_options, match):
    fn = task_options.pop("fn", lambda: None)
    refused(app, lambda: app.task(fn, name="t.new", **task_options), match)
    assert "t.new" not in app.tasks


def test_an_unknown_submit_option_is_a_contract_error(app):
    refused(app, lambda: app.submit("t.echo", 1, colour="blue"), "colour")
    refused(app, lambda: app.submit_many("t.echo", [(1,)], colour="blue"), "colour")


def test_add_step_outside_a_flow_step_is_a_contract_error():
    from engine.context import TaskContext

    with pytest.raises(ContractError, match="not a flow step"):
        TaskContext("e_0001_0190f3c2a1b4c7d2e9f", 1, 0, None).add_step("x", "t.echo")


@pytest.fixture
def step_context(app):
    """The context a worker gives the running step "a" of a fresh flow."""
    from engine.context import TaskContext
    from engine.worker import Worker

    flow = app.flow("f")
    flow.step("a", "t.echo", 1)
    run = flow.submit()
    return TaskContext(run.step_execution("a"), 1, 0, worker=Worker(app, lanes=["default"]),
                       flow_id=run.id, step_id="a")


@pytest.mark.parametrize("options, match", [
    ({"after": None}, "after must be a list"),
    ({"after": [""]}, "step id must not be empty"),
    ({"after": ["no-such-step"]}, "depends on 'no-such-step', not steps of flow"),
    ({"after_any": ["no-such-step"]}, "depends on 'no-such-step', not steps of flow"),
    ({"colour": "blue"}, "colour"),
])
def test_add_step_refuses_bad_dependencies_and_options_before_writing(app, step_context, options, match):
    refused(app, lambda: step_context.add_step("b", "t.echo", **options), match)


def test_add_step_after_an_existing_step_is_written(app, step_context):
    before = snapshot(app.client)
    step_context.add_step("b", "t.echo", after=["a"])
    assert snapshot(app.client) != before


@pytest.mark.parametrize("options", [
    {"max_attempts": True}, {"backoff_s": True}, {"dont_retry_on": ValueError},
    {"dont_retry_on": [ValueError]}, {"dont_retry_on": (ValueError, "KeyError")},
])
def test_a_retry_policy_refuses_booleans_and_anything_but_a_tuple_of_exception_classes(options):
    from engine import Retry

    with pytest.raises(ContractError):
        Retry(**options)


@pytest.mark.parametrize("options", [{"concurrency": 0}, {"concurrency": "8"}, {"lease_ms": 5},
                                     {"batch_max": 0}])
def test_a_worker_refuses_bad_concurrency_lease_and_batch_with_a_contract_error(app, options):
    from engine.worker import Worker

    with pytest.raises(ContractError):
        Worker(app, ["default"], **options)
