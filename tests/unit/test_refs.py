"""References travel beside the arguments: user values are never read as engine syntax."""

from __future__ import annotations

import json

import pytest

from engine import App, ContractError, NotSerializable
from engine.codec import decode
from engine.flows import Ref as RefFromFlows
from engine.refs import MAX_NESTING, Ref, encode_payload, find, substitute
from tests.conftest import fake_client, snapshot

MARKER_LOOKALIKES = [
    {"__flowslot_ref__": "a"},
    {"__flowslot_ref__": "missing"},
    {"__flowslot_ref__": ["a"]},
    {"refs": [[["args", 0], "a"]]},
    {"args": [], "kwargs": {}, "refs": [[["args", 0], "a"]]},
]


def round_trip(args, kwargs, inputs):
    """What a handler receives: encode as the submitter does, then decode as the worker does."""
    found = find(args, kwargs)
    payload = decode(encode_payload(args, kwargs, found, limit_bytes=1 << 20, what="payload"))
    got_args, got_kwargs = list(payload["args"]), dict(payload["kwargs"])
    if payload.get("refs"):
        substitute(got_args, got_kwargs, payload["refs"], inputs)
    return got_args, got_kwargs


def test_ref_is_still_importable_from_engine_flows():
    assert RefFromFlows is Ref


@pytest.mark.parametrize("literal", MARKER_LOOKALIKES)
def test_a_literal_that_looks_like_a_marker_arrives_unchanged(literal):
    a = Ref(None, "a", "ref")
    args, kwargs = round_trip((literal, a, [literal]), {"k": literal}, {"a": "A"})
    assert args == [literal, "A", [literal]]
    assert kwargs == {"k": literal}


def test_references_nested_in_lists_dicts_and_tuples_are_substituted():
    a, b = Ref(None, "a", "ref"), Ref(None, "b", "ref_or_default", 0)
    args, kwargs = round_trip(
        (1, (a, {"deep": [b, {"x": a}]}), {"0": b}),
        {"named": a, "nested": {"list": (b,)}},
        {"a": {"rows": [1]}, "b": "bee"})
    assert args == [1, [{"rows": [1]}, {"deep": ["bee", {"x": {"rows": [1]}}]}], {"0": "bee"}]
    assert kwargs == {"named": {"rows": [1]}, "nested": {"list": ["bee"]}}


def test_a_reference_without_an_input_becomes_none():
    args, _ = round_trip((Ref(None, "gone", "ref"),), {}, {})
    assert args == [None]


def test_the_stored_payload_holds_null_where_a_reference_is_and_the_path_beside_it():
    a = Ref(None, "a", "ref")
    payload = json.loads(encode_payload((1, {"k": a}), {"x": a}, find((1, {"k": a}), {"x": a}),
                                        limit_bytes=1 << 20, what="payload"))
    assert payload["args"] == [1, {"k": None}] and payload["kwargs"] == {"x": None}
    assert sorted(payload["refs"]) == [[["args", 1, "k"], "a"], [["kwargs", "x"], "a"]]


def test_a_payload_without_references_has_no_refs_entry():
    assert json.loads(encode_payload((1,), {}, [], limit_bytes=100, what="p")) == {"args": [1], "kwargs": {}}


@pytest.mark.parametrize("value", [{1: "a"}, {None: "a"}, {("t",): "a"}, [{"ok": {2.5: "a"}}]])
def test_dict_keys_in_arguments_must_be_strings(value):
    with pytest.raises(ContractError, match="dict keys in arguments must be strings"):
        find((value,), {})


def test_nesting_deeper_than_the_bound_is_refused_without_recursion():
    deep: list = []
    for _ in range(50_000):
        deep = [deep]
    with pytest.raises(NotSerializable, match=f"more than {MAX_NESTING} levels"):
        find((deep,), {})


def test_a_cycle_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(NotSerializable):
        find((loop,), {})


@pytest.mark.parametrize("refs", ["x", [["args"]], [[["args", 5], "a"]], [[["args", "k"], "a"]],
                                  [[["nope", 0], "a"]], [[[], "a"]], [1]])
def test_a_malformed_refs_list_is_a_contract_error(refs):
    with pytest.raises(ContractError, match="malformed"):
        substitute([1], {}, refs, {"a": 1})


@pytest.fixture
def app(namespace):
    client = fake_client(namespace)
    app = App(client=client, namespace=namespace, partitions=client.keys.partitions)

    @app.task(name="t.echo")
    def echo(*args, **kwargs):
        return args

    return app


def test_a_reference_outside_a_flow_step_is_refused_and_nothing_is_written(app):
    flow = app.flow("f")
    a = flow.step("a", "t.echo", 1)
    before = snapshot(app.client)
    with pytest.raises(ContractError, match=r"args\[0\] is a step reference"):
        app.submit("t.echo", a.ref())
    assert snapshot(app.client) == before


def test_a_flow_step_payload_carries_its_references_beside_the_arguments(app):
    flow = app.flow("f")
    a = flow.step("a", "t.echo", 1)
    b = flow.step("b", "t.echo", {"__flowslot_ref__": "a"}, a.ref())
    encoded = flow.encode_step(b, 0)
    assert json.loads(encoded["payload"]) == {
        "args": [{"__flowslot_ref__": "a"}, None], "kwargs": {}, "refs": [[["args", 1], "a"]]}
    assert encoded["edges"] == [["a", "ref"]]  # the literal made no edge
