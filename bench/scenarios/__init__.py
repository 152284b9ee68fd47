"""The scenario registry: ``flowslot bench <name>`` for each entry.

To add one, write ``bench/scenarios/<name>.py`` exposing ``SCENARIO`` (a
``Scenario``) and add the module to ``_MODULES``.
"""

from __future__ import annotations

import importlib

from bench.scenarios.base import Result, Scenario

_MODULES = ("submit_claim_complete", "chain", "fanout", "cascade", "reconcile_cost", "scale",
            "memory", "steady", "bounded_calls", "waits", "signal", "wants")


def scenarios() -> dict[str, Scenario]:
    """Name -> scenario, in registry order."""
    found = [importlib.import_module(f"bench.scenarios.{m}").SCENARIO for m in _MODULES]
    return {s.name: s for s in found}


__all__ = ["Result", "Scenario", "scenarios"]
