"""Run the scanners over the partitions this process owns, each at its own interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from engine.client import Client
from reconciler.ownership import Ownership
from reconciler.scanners import ScanResult, Scanner, default_scanners

log = logging.getLogger("flowslot.reconciler")


class Reconciler:
    """Scanners over owned partitions (all of them when ``ownership`` is None)."""

    def __init__(self, client: Client, scanners: Sequence[Scanner] | None = None,
                 interval_s: float | None = None, ownership: Ownership | None = None,
                 on_result: Callable[[str, ScanResult], None] | None = None) -> None:
        self.client = client
        self.scanners = list(scanners) if scanners is not None else default_scanners()
        if interval_s is not None:
            for scanner in self.scanners:
                scanner.interval_s = min(scanner.interval_s, interval_s)
        self.ownership = ownership
        self.on_result = on_result
        self.totals: dict[str, int] = {s.name: 0 for s in self.scanners}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def partitions(self) -> list[int]:
        if self.ownership is None:
            return list(range(self.client.keys.partitions))
        return sorted(self.ownership.owned)

    def run_scanner(self, scanner: Scanner) -> ScanResult:
        result = scanner.run(self.client, self.partitions())
        self.totals[scanner.name] += result.repaired
        if result.repaired:
            log.info("scanner %s repaired %d", scanner.name, result.repaired)
        if self.on_result is not None:
            self.on_result(scanner.name, result)
        return result

    def run_pass(self, names: Sequence[str] | None = None) -> dict[str, ScanResult]:
        """One pass of every scanner (or the named ones) over the owned partitions."""
        if self.ownership is not None:
            self.ownership.rebalance()
        chosen = [s for s in self.scanners if names is None or s.name in names]
        return {s.name: self.run_scanner(s) for s in chosen}

    def run_forever(self) -> None:
        due = {s.name: 0.0 for s in self.scanners}
        next_rebalance = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if self.ownership is not None and now >= next_rebalance:
                    self.ownership.rebalance()
                    next_rebalance = now + self.ownership.ttl_s / 3
                for scanner in self.scanners:
                    if now >= due[scanner.name]:
                        self.run_scanner(scanner)
                        due[scanner.name] = now + scanner.interval_s
            except Exception:
                log.exception("reconciler round failed; retrying shortly")
            wake = min([*due.values(), next_rebalance if self.ownership else float("inf")])
            self._stop.wait(max(0.01, min(wake - time.monotonic(), 1.0)))

    def start(self) -> Reconciler:
        self._thread = threading.Thread(target=self.run_forever, name="flowslot-reconciler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the current round, then give the partitions back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.ownership is not None:
            self.ownership.release_all()
