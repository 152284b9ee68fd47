"""``flowslot bench lua-cost``: server instructions per no-op job, phase by phase.

Timings on a shared 2-core machine move by ±20 % from run to run; instruction
counts do not. This runs one standalone server of the embedded binary under
``valgrind --tool=callgrind``, loads the library (this checkout's, or the one
``--rev`` names in git), and from one client submits ``--jobs`` executions with
``exec_submit_many``, claims them with ``exec_claim`` and records them with
``exec_complete_many``, ``--batch`` executions per call. Callgrind's counters
are zeroed before each phase and dumped after it (``callgrind_control``), so
each phase's instructions are the server's alone, whatever else runs. Two
revisions compared this way differ only by what their Lua does.

Instructions are not time: a syscall's kernel work is not counted, and one
instruction costs more on a busy machine. Use it to compare library versions;
use ``submit-claim-complete`` for the CPU time of a real run.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from engine import replies
from engine.library import assemble, library
from engine.localcluster.binary import find_server_binary
from keys import KeySpace, new_id

PHASES = ("submit", "claim", "complete")
PAYLOAD = '"' + "x" * 98 + '"'  # 100 bytes, as submit-claim-complete's default


def library_source(rev: str | None) -> str:
    """This checkout's library, or the ``lua/*.lua`` of git revision ``rev`` joined the same way."""
    if rev is None:
        return library().source
    listed = subprocess.run(["git", "ls-tree", "--name-only", rev, "lua/"], capture_output=True, text=True)
    if listed.returncode != 0:
        raise click.ClickException(f"git cannot list lua/ at {rev} (run from a checkout): {listed.stderr.strip()}")
    names = listed.stdout.split()
    files = sorted(n for n in names if n.endswith(".lua"))
    if not files:
        raise click.ClickException(f"git revision {rev} has no lua/*.lua")
    return assemble([(n.split("/")[-1], subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True,
                                                       text=True, check=True).stdout) for n in files]).source


def dump_total(path_prefix: str) -> int:
    """Instructions in the newest callgrind dump written under ``path_prefix``."""
    newest = max(glob.glob(path_prefix + ".*"), key=os.path.getmtime)
    with open(newest, encoding="utf-8") as dump:
        for line in dump:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise click.ClickException(f"{newest} holds no instruction total")


@contextlib.contextmanager
def _server(rev: str | None, port: int) -> Iterator[tuple[Any, Callable[[str], int]]]:
    """A standalone server under callgrind with the library loaded: a client, and
    ``measure(name)`` that dumps the counters and returns the instructions since the last zeroing
    (``zero()`` is ``measure`` with no dump: the counters start again)."""
    import redis

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise click.ClickException("lua-cost needs valgrind (callgrind and callgrind_control) on PATH, "
                                   "e.g. apt-get install valgrind")
    out_dir = tempfile.mkdtemp(prefix="flowslot-luacost-")
    prefix = os.path.join(out_dir, "callgrind.out")
    server = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}",
                               str(find_server_binary().path), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise click.ClickException("the server under valgrind did not start") from None
                time.sleep(0.2)
        r.function_load(library_source(rev), replace=True)

        def measure(name: str) -> int:
            """Dump the counters as ``name`` and return their total; zero them for what follows."""
            subprocess.run(["callgrind_control", "-d", name, str(server.pid)], capture_output=True, check=True)
            total = dump_total(prefix)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
            return total

        subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
        yield r, measure
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(out_dir, ignore_errors=True)


def _run(jobs: int, batch: int, rev: str | None, port: int) -> dict[str, Any]:
    with _server(rev, port) as (r, measure):
        ks = KeySpace("luacost", 16)
        ids = [new_id("e", 0) for _ in range(jobs)]
        claimed: list[tuple[str, str]] = []

        def submit() -> None:
            pipe = r.pipeline(transaction=False)
            for i in range(0, jobs, batch):
                args: list[Any] = []
                for eid in ids[i:i + batch]:
                    args += [eid, "noop", "default", PAYLOAD, 0, 0, 3, 1000, 300000, 0]
                pipe.fcall("exec_submit_many", 1, ks.delayed(0), *args)
            pipe.execute()

        def claim() -> None:
            while True:  # (replies.exec_claim reads the flat reply and the older list of entries)
                got = replies.exec_claim(r.fcall("exec_claim", 1, ks.ready(0, "default"), batch, 60_000,
                                                 "luacost")).claimed
                if not got:
                    return
                claimed.extend((c.execution_id, c.token) for c in got)

        def complete() -> None:
            pipe = r.pipeline(transaction=False)
            for i in range(0, len(claimed), batch):
                args: list[Any] = []
                for eid, token in claimed[i:i + batch]:
                    args += [eid, token, "null"]
                pipe.fcall("exec_complete_many", 1, ks.leases(0), *args)
            pipe.execute()

        per_job: dict[str, float] = {}
        measure("setup")
        for name, phase in zip(PHASES, (submit, claim, complete), strict=True):
            phase()
            per_job[name] = measure(name) / jobs
        if len(claimed) != jobs:
            raise click.ClickException(f"claimed {len(claimed)} of {jobs} executions")
        states = {r.hget(ks.execution(0, eid), "state") for eid in ids[:100]}
        if states != {"succeeded"}:
            raise click.ClickException(f"executions ended {sorted(states)}, not succeeded")
        return {"scenario": "lua-cost", "jobs": jobs, "batch": batch, "rev": rev or "checkout",
                "instructions_per_job": {k: round(v) for k, v in per_job.items()},
                "total_per_job": round(sum(per_job.values()))}


FANOUT_PHASES = ("submit", "resolve", "claim", "complete")
CLAIM_BATCH, COMPLETE_BATCH = 16, 8  # as one worker at concurrency 16 claims and records a fan-out


def _step_spec(step: str, edges: list[list[str]]) -> dict[str, Any]:
    """A flow_submit step spec with every option written out (every revision's library reads it)."""
    return {"step": step, "id": new_id("e", 0), "task": "step", "lane": "default", "payload": PAYLOAD,
            "priority": 0, "max_attempts": 3, "backoff_ms": 1000, "backoff_max_ms": 300000,
            "deadline_in_ms": 0, "optional": False, "policy": "all", "quorum": 0, "edges": edges}


def _fanout(width: int, rev: str | None, port: int) -> dict[str, Any]:
    """One flow root -> ``width`` steps -> join, driven through the functions as a worker drives
    it: submitted in work-bounded calls, the root completed and its edges resolved by
    ``flow_resolve``, the middle steps claimed 16 at a time and recorded 8 per
    ``flow_complete_many`` (one ``flow_complete`` each where the library has no such function),
    the join leased in the last of those replies and completed."""
    from engine.flowbatches import plan_batches

    specs = [_step_spec("root", [])]
    specs += [_step_spec(f"m{i}", [["root", "ref"]]) for i in range(width)]
    specs.append(_step_spec("join", [[f"m{i}", "ref"] for i in range(width)]))
    ks = KeySpace("luacost", 16)
    fid = new_id("f", 0)
    lanes_args = (60_000, "luacost", "default")
    with _server(rev, port) as (r, measure):
        def claim(count: int) -> list[replies.Claimed]:
            return replies.exec_claim(r.fcall("exec_claim", 1, ks.ready(0, "default"), count, 60_000,
                                              "luacost")).claimed

        def submit() -> None:
            chunks = plan_batches(specs)
            pipe = r.pipeline(transaction=False)
            for chunk in chunks[:-1]:
                pipe.fcall("flow_submit", 1, ks.flow(0, fid), fid, "fanout", "{}", json.dumps(chunk), 0, "")
            pipe.execute()
            left = r.fcall("flow_submit", 1, ks.flow(0, fid), fid, "fanout", "{}", json.dumps(chunks[-1]), 1, "")[4]
            while left:
                left = r.fcall("flow_seal", 1, ks.flow(0, fid), 200)[1]

        def resolve() -> None:
            (root,) = claim(1)
            key = ks.execution(0, root.execution_id)
            r.fcall("flow_complete", 1, key, root.token, "1", 150, 0, *lanes_args)
            while not r.fcall("flow_resolve", 1, key, 150)[0]:
                pass

        claimed: list[replies.Claimed] = []

        def claims() -> None:
            while got := claim(CLAIM_BATCH):
                claimed.extend(got)

        def complete() -> None:
            join: list[replies.Claimed] = []
            for i in range(0, len(claimed), COMPLETE_BATCH):
                chunk = claimed[i:i + COMPLETE_BATCH]
                try:
                    reply = r.fcall("flow_complete_many", 1, ks.leases(0), 150, 1, *lanes_args,
                                    *(v for c in chunk for v in (c.execution_id, c.token, "2")))
                    join += replies.flow_complete_many(reply)[0].claimed  # type: ignore[union-attr]
                except Exception as e:  # noqa: BLE001 - a revision before flow_complete_many
                    if "flow_complete_many" not in str(e) and "not found" not in str(e).lower():
                        raise
                    for c in chunk:
                        join += replies.flow_complete(r.fcall(
                            "flow_complete", 1, ks.execution(0, c.execution_id), c.token, "2", 150, 1,
                            *lanes_args)).claimed
            for c in join:
                r.fcall("flow_complete", 1, ks.execution(0, c.execution_id), c.token, "3", 150, 0, *lanes_args)

        measure("setup")
        per_step: dict[str, float] = {}
        for name, phase in zip(FANOUT_PHASES, (submit, resolve, claims, complete), strict=True):
            phase()
            per_step[name] = measure(name) / (width + 2)
        state = r.hget(ks.flow(0, fid), "state")
        if len(claimed) != width or state != "succeeded":
            raise click.ClickException(f"claimed {len(claimed)} of {width} middle steps; the flow is {state}")
    return {"scenario": "lua-cost", "flow": "fanout", "width": width, "rev": rev or "checkout",
            "instructions_per_step": {k: round(v) for k, v in per_step.items()},
            "total_per_step": round(sum(per_step.values()))}


def _chain(flows: int, rev: str | None, port: int) -> dict[str, Any]:
    """``flows`` 10-step chains driven as a worker with a handoff drives them: submitted one call
    each, each root claimed, then every step recorded with ``flow_complete``, which leases the
    next step to the caller in its reply."""
    steps = 10
    ks = KeySpace("luacost", 16)
    chains = []
    for _ in range(flows):
        specs = [_step_spec("s0", [])] + [_step_spec(f"s{i}", [[f"s{i - 1}", "ref"]]) for i in range(1, steps)]
        chains.append((new_id("f", 0), specs))
    lanes_args = (60_000, "luacost", "default")
    with _server(rev, port) as (r, measure):
        def submit() -> None:
            for fid, specs in chains:
                r.fcall("flow_submit", 1, ks.flow(0, fid), fid, "chain", "{}", json.dumps(specs), 1, "")

        roots: list[replies.Claimed] = []

        def claim() -> None:
            while got := replies.exec_claim(r.fcall("exec_claim", 1, ks.ready(0, "default"), 50, 60_000,
                                                    "luacost")).claimed:
                roots.extend(got)

        def record() -> None:
            for root in roots:
                step: replies.Claimed | None = root
                while step is not None:
                    reply = replies.flow_complete(r.fcall("flow_complete", 1, ks.execution(0, step.execution_id),
                                                          step.token, "1", 150, 1, *lanes_args))
                    step = reply.claimed[0] if reply.claimed else None

        measure("setup")
        per_step: dict[str, float] = {}
        for name, phase in zip(("submit", "claim", "complete"), (submit, claim, record), strict=True):
            phase()
            per_step[name] = measure(name) / (flows * steps)
        states = {r.hget(ks.flow(0, fid), "state") for fid, _ in chains}
        if len(roots) != flows or states != {"succeeded"}:
            raise click.ClickException(f"claimed {len(roots)} of {flows} roots; the flows are {sorted(states)}")
    return {"scenario": "lua-cost", "flow": "chain", "flows": flows, "rev": rev or "checkout",
            "instructions_per_step": {k: round(v) for k, v in per_step.items()},
            "total_per_step": round(sum(per_step.values()))}


@click.command("lua-cost")
@click.option("--jobs", type=click.IntRange(10, 100_000), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(1, 100), default=50, show_default=True,
              help="Executions per FCALL in each phase.")
@click.option("--rev", multiple=True, help="Git revisions to measure (each its own server); default: "
                                           "this checkout's library.")
@click.option("--port", type=int, default=23990, show_default=True)
@click.option("--flow", type=click.Choice(["fanout", "chain"]), default=None,
              help="Instead of no-op jobs: one flow root -> --width steps -> join, per step in submit, "
                   "resolve, claim and complete; or 100 10-step chains, per step in submit, the roots' "
                   "claim, and complete (each step's flow_complete leasing the next).")
@click.option("--width", type=click.IntRange(2, 9_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per revision.")
def lua_cost(jobs: int, batch: int, rev: tuple[str, ...], port: int, flow: str | None, width: int,
             as_json: bool) -> None:
    """Server instructions per no-op job in submit, claim and complete, or per step of a fan-out
    flow or of 10-step chains (--flow; callgrind, needs valgrind)."""
    for one in rev or (None,):
        if flow:
            result = _fanout(width, one, port) if flow == "fanout" else _chain(100, one, port)
            if as_json:
                click.echo(json.dumps(result))
                continue
            shape = f"1 -> {width} -> 1" if flow == "fanout" else "100 10-step chains"
            phases = "  ".join(f"{k} {v:,}" for k, v in result["instructions_per_step"].items())
            click.echo(f"{result['rev']}: {phases}  total {result['total_per_step']:,} instructions per step "
                       f"({shape})")
            continue
        result = _run(jobs, batch, one, port)
        if as_json:
            click.echo(json.dumps(result))
            continue
        phases = "  ".join(f"{k} {v:,}" for k, v in result["instructions_per_job"].items())
        click.echo(f"{result['rev']}: {phases}  total {result['total_per_job']:,} instructions per job "
                   f"({jobs} jobs, {batch} per call)")
