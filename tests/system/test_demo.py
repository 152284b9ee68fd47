"""The newcomer's first command runs end to end on an embedded cluster and exits 0."""

import pytest
from click.testing import CliRunner

from engine.cli import main

pytestmark = [pytest.mark.server, pytest.mark.system]


def test_the_demo_runs_a_flow_with_a_retry_an_optional_failure_and_fan_in_and_exits_zero():
    result = CliRunner().invoke(main, ["demo", "--images", "10"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "flow f_" in out and "succeeded" in out
    assert "fetch_orders took 2 attempts" in out
    assert "geo_enrich  failed  (optional)" in out
    assert '"regions": 6' in out and '"geo": "unavailable"' in out
    assert "everything stopped cleanly" in out
