"""A fan-in wider than one call carries, end to end with a real worker process.

The flow is written in calls of at most 60 work units (the join's 1,200 edges
arrive in about twenty pieces), and the join's 1,200 inputs are more than a
claim carries (``CLAIM_INPUTS``), so the worker reads them in pages; each
result must still land at its own place in the join's arguments.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.server

WIDTH = 1_200
BUDGET = 60


def test_a_fan_in_split_over_many_calls_and_paged_inputs_gets_every_result_in_place(
        server_url, namespace, make_app, spawn_worker):
    app = make_app(server_url, namespace)
    spawn_worker(server_url, namespace)
    flow = app.flow("wide-join", max_steps=WIDTH + 2)
    root = flow.step("root", "basic.add", 0, 1)
    middles = [flow.step(f"m{i}", "basic.add", root.ref(), i) for i in range(WIDTH)]
    flow.step("join", "flow.echo", [m.ref() for m in middles])
    run = flow.submit(budget=BUDGET)
    assert run.wait(timeout=60).value == "succeeded"
    assert run.result("join", timeout=1) == [1 + i for i in range(WIDTH)]
    assert run.status()["counts"] == {"succeeded": WIDTH + 2}

