"""Bad input gets a clear error at the call, and the keyspace stays exactly as it was."""

from __future__ import annotations

import pytest

from engine import App, ContractError, NotSerializable, PayloadTooLarge, Retry
from engine.handle import Handle
from keys import new_id
from tests.conftest import fake_client, snapshot


@pytest.fixture
def app(namespace):
    client = fake_client(namespace)
    app = App(client=client, namespace=namespace, partitions=client.keys.partitions,
              max_payload_bytes=1024)

    @app.task(name="t.echo")
    def echo(value):
        return value

    return app


def unchanged(app, call):
    before = snapshot(app.client)
    call()
    assert snapshot(app.client) == before


def test_a_payload_over_the_limit_is_refused(app):
    def call():
        with pytest.raises(PayloadTooLarge, match="over the limit of 1024 bytes"):
            app.submit("t.echo", "x" * 2000)

    unchanged(app, call)


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), b"bytes"])
def test_a_value_that_is_not_json_is_refused(app, value):
    def call():
        with pytest.raises(NotSerializable, match="not JSON-serializable"):
            app.submit("t.echo", value)

    unchanged(app, call)


@pytest.mark.parametrize("lane", ["", "has space", "x" * 65, "{brace}"])
def test_an_invalid_lane_is_refused(app, lane):
    def call():
        with pytest.raises(ContractError, match="invalid lane"):
            app.submit("t.echo", 1, lane=lane)

    unchanged(app, call)


@pytest.mark.parametrize("options, message", [
    ({"priority": 256}, "priority"),
    ({"priority": -1}, "priority"),
    ({"priority": "high"}, "priority"),
    ({"delay_s": -1}, "delay_s"),
    ({"deadline_s": 0}, "deadline_s"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ({"retry": "three times"}, "retry must be a Retry"),
])
def test_invalid_submit_options_are_refused(app, options, message):
    def call():
        with pytest.raises(ContractError, match=message):
            app.submit("t.echo", 1, **options)

    unchanged(app, call)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 1.5}, "max_attempts"),
    ({"backoff_s": -1}, "backoff_s"),
    ({"backoff_s": 10, "backoff_max_s": 1}, "backoff_max_s"),
])
def test_invalid_retry_policies_are_refused_when_built(kwargs, message):
    with pytest.raises(ContractError, match=message):
        Retry(**kwargs)


def test_submitting_an_unregistered_function_is_refused(app):
    def not_a_task():
        pass

    def call():
        with pytest.raises(ContractError, match="not a registered task"):
            app.submit(not_a_task)

    unchanged(app, call)


@pytest.mark.parametrize("bad_id", ["nope", "e_00a3_zz", new_id("f", 1), new_id("e", 9999)])
def test_malformed_or_foreign_ids_are_refused_with_a_clear_error(app, bad_id):
    def call():
        with pytest.raises(ContractError, match="id"):
            app.handle(bad_id)
        with pytest.raises(ContractError, match="id"):
            app.cancel(bad_id)

    unchanged(app, call)


def test_an_unknown_execution_is_not_found(app):
    from engine import NotFound

    with pytest.raises(NotFound):
        app.handle(new_id("e", 1))
    with pytest.raises(NotFound):
        Handle(app.client, new_id("e", 1)).cancel()
