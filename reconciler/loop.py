"""Run the scanners over every partition, once or periodically.

This is the thin reconciler of the core engine: lease expiry and delayed
promotion over all partitions from one process. Partition ownership leases
between several daemons, and the other scanners, build on this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from engine.client import Client
from reconciler.scanners import ScanResult, Scanner, default_scanners

log = logging.getLogger("flowslot.reconciler")


class Reconciler:
    def __init__(self, client: Client, scanners: Sequence[Scanner] | None = None,
                 interval_s: float = 1.0) -> None:
        self.client = client
        self.scanners = list(scanners) if scanners is not None else default_scanners()
        self.interval_s = interval_s
        self.totals: dict[str, int] = {s.name: 0 for s in self.scanners}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pass(self) -> dict[str, ScanResult]:
        """One pass of every scanner over every partition."""
        partitions = range(self.client.keys.partitions)
        results = {}
        for scanner in self.scanners:
            result = scanner.run(self.client, partitions)
            results[scanner.name] = result
            self.totals[scanner.name] += result.repaired
            if result.repaired:
                log.info("scanner %s repaired %d", scanner.name, result.repaired)
        return results

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Exception:
                log.exception("reconciler pass failed; retrying next interval")
            self._stop.wait(self.interval_s)

    def start(self) -> Reconciler:
        self._thread = threading.Thread(target=self.run_forever, name="flowslot-reconciler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
