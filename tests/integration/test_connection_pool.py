"""A refused argument never keeps a pooled connection: the App stays usable after hundreds of them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import App, ContractError
from engine.router import Command

pytestmark = pytest.mark.server

BAD_CALLS = 300


def in_use(app: App) -> int:
    """Connections currently taken from the router's connections of every node the App knows."""
    router = app.client.router
    return sum(router.connections(node).lent for node in router.primaries())


def bad_calls(app: App) -> list[Callable[[], object]]:
    """Calls whose arguments the server could never receive (one of each kind the issue names)."""
    handle = app.submit("basic.add", 1, 2)
    flow = app.flow("pool")
    flow.step("a", "flow.echo", 1)
    run = flow.submit()
    key = app.client.keys.config()
    return [
        lambda: handle.cancel(None),  # type: ignore[arg-type]
        lambda: handle.cancel(42),  # type: ignore[arg-type]
        lambda: handle.cancel("\ud800"),
        lambda: app.submit("\ud800"),
        lambda: app.flow("\ud800").step("a", "flow.echo", 1).flow.submit(),
        lambda: run.result(1),  # type: ignore[arg-type]
        lambda: run.step_execution(None),  # type: ignore[arg-type]
        lambda: run.cancel(None),  # type: ignore[arg-type]
        # Below the public API: a command the router cannot encode is refused, not leaked.
        lambda: app.client.run(Command(("HGET", key, "\ud800"), key)),
        lambda: app.client.run(Command(("HGET", key, None), key)),
    ]


def test_hundreds_of_refused_arguments_leak_no_connection(server_url, namespace, make_app):
    app = make_app(server_url, namespace)
    calls = bad_calls(app)
    baseline = in_use(app)
    for n in range(BAD_CALLS):
        with pytest.raises(ContractError):
            calls[n % len(calls)]()
        assert in_use(app) == baseline, f"bad call {n} kept a connection"
    assert app.submit("basic.add", 2, 3).state().value == "ready"
    assert in_use(app) == baseline


def test_a_batch_with_one_unencodable_call_runs_the_others(server_url, namespace, make_app):
    app = make_app(server_url, namespace)
    key = app.client.keys.config()
    good, bad = Command(("HGET", key, "partitions"), key), Command(("HGET", key, "\ud800"), key)
    baseline = in_use(app)
    replies = app.client.run_many([good, bad, good])
    assert replies[0] == replies[2] == "16"
    assert isinstance(replies[1], ContractError) and "argument 2" in str(replies[1])
    assert in_use(app) == baseline
