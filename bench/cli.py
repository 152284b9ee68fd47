"""``flowslot bench <scenario>``: one command per registered scenario, same shared options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bench import environment, report
from bench.params import Params
from bench.scenarios import Scenario, scenarios
from bench.server import open_target
from engine.errors import EngineError
from keys import DEFAULT_PARTITIONS

DEFAULT_WORKERS = 4
MAX_WORKERS = 256


def _progress(text: str) -> None:
    click.echo(f"[bench] {text}", err=True)


def shared_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Sizes, target and output options of every scenario."""
    options = [
        click.option("--tasks", default=10_000, show_default=True,
                     type=click.IntRange(1, 10_000_000)),
        click.option("--workers", default=None, type=str,
                     help="Worker processes [default: 4]; submit-claim-complete takes a "
                          "comma-separated list [default: 1,2,4,8]."),
        click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 4096),
                     help="Handler threads per flowslot worker process."),
        click.option("--payload-bytes", default=100, show_default=True,
                     type=click.IntRange(0, 50_000_000)),
        click.option("--partitions", default=DEFAULT_PARTITIONS, show_default=True, type=int),
        click.option("--chunk", default=500, show_default=True, type=click.IntRange(1, 100_000),
                     help="Submissions per pipelined batch."),
        click.option("--timeout-s", default=300.0, show_default=True, type=click.FloatRange(1),
                     help="Give up waiting for completions after this long."),
        click.option("--url", default=None,
                     help="Server to measure (writes under a fresh namespace, deleted afterwards). "
                          "Default: start an embedded 3-primary cluster and stop it afterwards."),
        click.option("--standalone", is_flag=True,
                     help="Start an embedded standalone server instead of a cluster."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_scenario(scenario: Scenario, params: Params, url: str | None,
                 standalone: bool) -> dict[str, Any]:
    """Start (or reach) the server, run the scenario, add where it ran."""
    machine = environment.machine()  # before the run: the load average of everything else
    with open_target(url, standalone, _progress) as target:
        result = scenario.run(params, target, _progress)
        result["server"] = environment.server(target)
    result["machine"] = machine
    result["git"] = environment.git_revision()
    return result


def _worker_counts(value: str | None, scenario: Scenario) -> list[int]:
    """``--workers``: one count, or a comma-separated list where the scenario takes one."""
    text = value if value is not None else (scenario.worker_counts or str(DEFAULT_WORKERS))
    try:
        counts = list(dict.fromkeys(int(v) for v in text.split(",") if v.strip()))
    except ValueError:
        counts = []
    if not counts or any(not 1 <= c <= MAX_WORKERS for c in counts):
        raise click.BadParameter(f"worker counts must be integers in 1..{MAX_WORKERS}, got {text!r}",
                                 param_hint="--workers")
    if len(counts) > 1 and not scenario.worker_counts:
        raise click.BadParameter(f"{scenario.name} takes one worker count, got {text!r}",
                                 param_hint="--workers")
    return counts


def make_command(scenario: Scenario) -> click.Command:
    @click.command(name=scenario.name, help=scenario.summary)
    @shared_options
    def command(url: str | None, standalone: bool, as_json: bool, **sizes: Any) -> None:
        if url and standalone:
            raise click.BadParameter("--standalone applies to the embedded server, not to --url")
        extra = {o.name: sizes.pop(o.name) for o in scenario.options if o.name}
        counts = _worker_counts(sizes.pop("workers"), scenario)
        sizes["workers"] = counts[0]
        if scenario.worker_counts:
            extra["worker_counts"] = counts
        try:
            result = run_scenario(scenario, Params(**sizes, extra=extra), url, standalone)
        except (EngineError, OSError) as e:
            raise click.ClickException(f"{type(e).__name__}: {e}") from e
        click.echo(report.to_json(result) if as_json else report.to_table(result))
        unfinished = [name for name, system in report.systems(result).items()
                      if system["completed"] < result["tasks"]]
        if unfinished:
            raise click.ClickException(f"not every task completed: {', '.join(unfinished)}")

    command.params.extend(scenario.options)
    return command


@click.group()
def bench() -> None:
    """Benchmarks; not tests.

    Each scenario starts its own embedded server unless given --url, and
    prints an aligned table (or one JSON object with --json); progress goes
    to stderr.
    """


for _scenario in scenarios().values():
    bench.add_command(make_command(_scenario))


def _add_compare() -> None:
    """``flowslot bench compare``: flowslot and the peers side by side (bench/compare.py)."""
    from bench.compare import compare

    bench.add_command(compare)


_add_compare()


def _add_lua_cost() -> None:
    """``flowslot bench lua-cost``: instructions per job under callgrind (bench/luacost.py)."""
    from bench.luacost import lua_cost

    bench.add_command(lua_cost)


_add_lua_cost()

__all__ = ["bench", "make_command", "run_scenario"]
