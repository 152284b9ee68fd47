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
