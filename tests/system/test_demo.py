"""The newcomer's first command runs end to end on an embedded cluster and exits 0."""

import pytest
from click.testing import CliRunner

from engine.cli import main

pytestmark = [pytest.mark.server, pytest.mark.system]


def test_the_demo_runs_every_kind_of_outcome_and_exits_zero():
    result = CliRunner().invoke(main, ["demo", "--tasks", "20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "fetch_price" in result.output and "PermanentError" in result.output
    assert "1 failed" in result.output
