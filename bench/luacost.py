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

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
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


def _run(jobs: int, batch: int, rev: str | None, port: int) -> dict[str, Any]:
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
        for name, phase in zip(PHASES, (submit, claim, complete), strict=True):
            subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
            phase()
            subprocess.run(["callgrind_control", "-d", name, str(server.pid)], capture_output=True, check=True)
            per_job[name] = dump_total(prefix) / jobs
        if len(claimed) != jobs:
            raise click.ClickException(f"claimed {len(claimed)} of {jobs} executions")
        states = {r.hget(ks.execution(0, eid), "state") for eid in ids[:100]}
        if states != {"succeeded"}:
            raise click.ClickException(f"executions ended {sorted(states)}, not succeeded")
        return {"scenario": "lua-cost", "jobs": jobs, "batch": batch, "rev": rev or "checkout",
                "instructions_per_job": {k: round(v) for k, v in per_job.items()},
                "total_per_job": round(sum(per_job.values()))}
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(out_dir, ignore_errors=True)


@click.command("lua-cost")
@click.option("--jobs", type=click.IntRange(10, 100_000), default=2000, show_default=True)
@click.option("--batch", type=click.IntRange(1, 100), default=50, show_default=True,
              help="Executions per FCALL in each phase.")
@click.option("--rev", multiple=True, help="Git revisions to measure (each its own server); default: "
                                           "this checkout's library.")
@click.option("--port", type=int, default=23990, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per revision.")
def lua_cost(jobs: int, batch: int, rev: tuple[str, ...], port: int, as_json: bool) -> None:
    """Server instructions per no-op job in submit, claim and complete (callgrind; needs valgrind)."""
    for one in rev or (None,):
        result = _run(jobs, batch, one, port)
        if as_json:
            click.echo(json.dumps(result))
            continue
        phases = "  ".join(f"{k} {v:,}" for k, v in result["instructions_per_job"].items())
        click.echo(f"{result['rev']}: {phases}  total {result['total_per_job']:,} instructions per job "
                   f"({jobs} jobs, {batch} per call)")
