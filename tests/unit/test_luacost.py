"""``flowslot bench lua-cost``: the library it loads and the counts it reads."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from bench.cli import bench
from bench.luacost import dump_total, library_source
from engine.library import library


def test_the_checkouts_library_is_the_one_the_engine_loads():
    assert library_source(None) == library().source


def test_a_git_revisions_library_holds_its_lua_files_in_name_order():
    source = library_source("HEAD")
    assert source.startswith("#!lua name=flowslot\n")
    order = [source.index(f"-- ==== {name} ====") for name in ("00_helpers.lua", "10_states.lua", "30_leases.lua")]
    assert order == sorted(order)
    assert "register('exec_claim'" in source


def test_the_newest_dump_gives_the_total(tmp_path):
    (tmp_path / "cg.out.1").write_text("events: Ir\nsummary: 12345\n")
    newer = tmp_path / "cg.out.2"
    newer.write_text("events: Ir\nfn=x\n1 5\ntotals: 678\n")
    subprocess.run(["touch", "-d", "+1 second", str(newer)], check=True)
    assert dump_total(str(tmp_path / "cg.out")) == 678


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_run_counts_every_phase_of_executions_that_all_succeed():
    result = CliRunner().invoke(bench, ["lua-cost", "--jobs", "100", "--batch", "50", "--json", "--port", "23989"])
    assert result.exit_code == 0, result.output
    import json

    counts = json.loads(result.output)["instructions_per_job"]
    assert set(counts) == {"submit", "claim", "complete"}
    assert all(v > 10_000 for v in counts.values())  # a job cannot cost less than its commands


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_fan_out_run_counts_every_phase_of_a_flow_that_succeeds():
    result = CliRunner().invoke(bench, ["lua-cost", "--flow", "fanout", "--width", "20", "--json",
                                        "--port", "23988"])
    assert result.exit_code == 0, result.output  # (a flow that did not succeed is an error)
    import json

    counts = json.loads(result.output)["instructions_per_step"]
    assert set(counts) == {"submit", "resolve", "claim", "complete"}
    assert all(v > 10_000 for v in counts.values())


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_chain_run_counts_every_phase_of_chains_that_all_succeed():
    result = CliRunner().invoke(bench, ["lua-cost", "--flow", "chain", "--json", "--port", "23987"])
    assert result.exit_code == 0, result.output  # (a chain that did not succeed is an error)
    import json

    counts = json.loads(result.output)["instructions_per_step"]
    assert set(counts) == {"submit", "claim", "complete"}
    assert counts["complete"] > counts["claim"]  # a step's record also resolves and leases the next
