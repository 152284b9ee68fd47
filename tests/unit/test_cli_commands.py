"""How ``flowslot`` finds its commands: engine's built in, the packages above it through the
``flowslot.commands`` entry points, each imported only when used."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from engine.cli import (
    BUILTIN,
    command_table,
    declared_in_source_tree,
    installed_entry_points,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
EVERY_COMMAND = {"bench", "cluster", "daemon", "demo", "event", "exec", "flow", "functions", "lanes",
                 "partitions", "reconcile", "secrets", "serve", "signal", "slices", "waits", "wants",
                 "worker"}
ABOVE_ENGINE = {"daemon": "reconciler", "reconcile": "reconciler", "demo": "reconciler", "bench": "bench"}


def resolve(target: str) -> object:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_flowslot_help_lists_every_command_of_every_package():
    result = CliRunner().invoke(main, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == EVERY_COMMAND


def test_resolving_the_worker_command_imports_neither_reconciler_nor_bench():
    script = (
        "import json, sys, click\n"
        "from engine.cli import main\n"
        "assert main.get_command(click.Context(main), 'worker') is not None\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('reconciler', 'bench'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_engine_builds_in_only_its_own_commands():
    assert all(target.startswith("engine.") for target in BUILTIN.values())


def test_a_source_tree_finds_the_commands_of_reconciler_and_bench_without_installed_metadata():
    declared = declared_in_source_tree(ROOT)
    if sys.version_info < (3, 11):
        assert declared is None  # no tomllib: the installed metadata is the only source
        return
    table = command_table(declared, installed={})
    assert set(table) == EVERY_COMMAND
    for name, package in ABOVE_ENGINE.items():
        assert table[name].startswith(f"{package}.")
        assert isinstance(resolve(table[name]), click.Command)


def test_the_installed_metadata_declares_every_command_of_the_packages_above_engine():
    installed = installed_entry_points(skip_own=False)
    missing = set(ABOVE_ENGINE) - set(installed)
    assert not missing, f"entry points {missing} not installed: run .venv/bin/pip install -e '.[dev]'"
    for name in ABOVE_ENGINE:
        assert isinstance(resolve(installed[name]), click.Command)


def test_an_entry_point_cannot_replace_a_built_in_command():
    table = command_table({"worker": "elsewhere:worker"}, installed={"worker": "plugin:worker", "extra": "p:x"})
    assert table["worker"] == BUILTIN["worker"]
    assert table["extra"] == "p:x"


def test_another_project_s_pyproject_is_not_read(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "other"\n[project.entry-points."flowslot.commands"]\nevil = "evil:cmd"\n')
    assert declared_in_source_tree(tmp_path) is None
    assert declared_in_source_tree(tmp_path / "missing") is None
