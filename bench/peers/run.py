"""``python -m bench.peers.run PEER --url URL --scenarios a,b --sizes JSON --log-dir DIR``.

Runs one peer's scenarios against the server at URL. Each cell is printed on
stdout as soon as it is measured (``{"cell": scenario, "value": {...}}``, one
JSON object a line), so a driver stopped half-way still hands back what it
measured; the last line is the whole answer: ``{"peer", "versions",
"results": {scenario: cell}}``. The peer's own chatter goes to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from bench.peers import module, versions
from bench.peers.base import FAILED_INSTALL, Sizes, status
from bench.peers.workers import URL_ENV


class _Emitting(dict[str, Any]):
    """A scenario -> cell dict that prints every cell the moment it is stored."""

    def __setitem__(self, scenario: str, cell: Any) -> None:
        super().__setitem__(scenario, cell)
        sys.stdout.write(json.dumps({"cell": scenario, "value": cell}) + "\n")
        sys.stdout.flush()

    def update(self, *args: Any, **kwargs: Any) -> None:
        for scenario, cell in dict(*args, **kwargs).items():
            self[scenario] = cell


@click.command()
@click.argument("peer")
@click.option("--url", required=True)
@click.option("--scenarios", required=True)
@click.option("--sizes", "sizes_json", required=True)
@click.option("--log-dir", required=True, type=click.Path(path_type=Path))
def main(peer: str, url: str, scenarios: str, sizes_json: str, log_dir: Path) -> None:
    os.environ[URL_ENV] = url  # the peer's task modules read it at import, here as in workers
    peer_module = module(peer)
    found = versions(peer)
    wanted = [s for s in scenarios.split(",") if s]
    primary = peer_module.DISTRIBUTIONS[0]
    if found[primary] is None:
        results = {s: status(FAILED_INSTALL, f"{primary} is not installed") for s in wanted}
    else:
        runnable = [s for s in wanted if s not in peer_module.UNSUPPORTED]
        results = _Emitting()
        peer_module.run(runnable, Sizes.from_json(sizes_json), url, log_dir, results)
        results.update({s: peer_module.UNSUPPORTED[s] for s in wanted
                        if s in peer_module.UNSUPPORTED})
    sys.stdout.write(json.dumps({"peer": peer, "versions": found, "results": dict(results)}) + "\n")
    sys.stdout.flush()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM from the comparing process: unwind, so every ``finally`` stops its workers."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    main(standalone_mode=False)
    # Workers are stopped by now; skip interpreter teardown, where some peers' result
    # objects try to reach the server from their finalizers.
    os._exit(0)
