"""The peers flowslot is compared with, each in its own module, each run in its own process.

A peer module ``bench/peers/<name>_peer.py`` exposes ``NAME``,
``DISTRIBUTIONS`` (the packages whose versions the report shows; the first
must be installed for the peer to run), ``UNSUPPORTED`` (scenario -> the
"no primitive" / "not measured" cell saying why) and
``run(scenarios, sizes, url, log_dir) -> {scenario: cell}``.
``python -m bench.peers.run`` runs one peer and prints its cells as JSON,
so a peer's imports, event loops and worker processes never touch the
comparing process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

PEERS = ("celery", "bullmq", "rq", "dramatiq", "arq")


def module(name: str) -> ModuleType:
    return importlib.import_module(f"bench.peers.{name}_peer")


def versions(name: str) -> dict[str, str | None]:
    """Installed version of each of the peer's distributions (None: not installed)."""
    out: dict[str, str | None] = {}
    for dist in module(name).DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


__all__ = ["PEERS", "module", "versions"]
