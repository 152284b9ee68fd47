"""Run the scanners over the partitions this process owns, each at its own interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from engine import metrics
from engine.client import Client
from reconciler.ownership import Ownership
from reconciler.scanners import Scanner, ScanResult, default_scanners
from reconciler.throttle import LogThrottle

log = logging.getLogger("flowslot.reconciler")
THROTTLE = LogThrottle(log)
MAX_BACKOFF_S = 60.0


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
        self.failures: dict[str, int] = {s.name: 0 for s in self.scanners}  # in a row, per scanner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def partitions(self) -> list[int]:
        if self.ownership is None:
            return list(range(self.client.keys.partitions))
        return sorted(self.ownership.owned)

    def run_scanner(self, scanner: Scanner) -> ScanResult:
        result = scanner.run(self.client, self.partitions())
        self.totals[scanner.name] += result.repaired
        if result.errors:
            metrics.SCANNER_ERRORS.labels(scanner.name).inc(result.errors)
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
        """Run each scanner when due until ``stop()``; a failing scanner backs off, the others go on."""
        due = {s.name: 0.0 for s in self.scanners}
        next_rebalance = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.ownership is not None and now >= next_rebalance:
                next_rebalance = now + self._rebalance()
            for scanner in self.scanners:
                if now >= due[scanner.name] and not self._stop.is_set():
                    due[scanner.name] = now + self._run_isolated(scanner)
            wake = min([*due.values(), next_rebalance if self.ownership else float("inf")])
            self._stop.wait(max(0.01, min(wake - time.monotonic(), 1.0)))

    def _rebalance(self) -> float:
        """Renew and rebalance the partition leases; seconds until the next time."""
        assert self.ownership is not None
        try:
            self.ownership.rebalance()
        except Exception as e:  # noqa: BLE001 - keep scanning the partitions still held
            THROTTLE.warning((self.client.keys.namespace, "rebalance"), "partition rebalance failed: %s: %s",
                             type(e).__name__, e)
            return min(1.0, self.ownership.ttl_s / 3)
        return self.ownership.ttl_s / 3

    def _run_isolated(self, scanner: Scanner) -> float:
        """One pass of ``scanner``; seconds until its next: its interval, or a back-off after an error.

        The back-off doubles with each failure in a row (interval × 2^failures,
        at most ``MAX_BACKOFF_S`` or the interval if longer); each failure is
        counted in ``flowslot_scanner_errors_total`` and logged at most once a
        minute (the first failure of a streak with its traceback).
        """
        try:
            self.run_scanner(scanner)
        except Exception as e:  # noqa: BLE001 - one scanner's fault must not starve the others
            failures = self.failures[scanner.name] = self.failures[scanner.name] + 1
            cap_s = max(MAX_BACKOFF_S, scanner.interval_s)
            delay_s = min(scanner.interval_s * 2.0 ** min(failures, 20), cap_s)
            metrics.SCANNER_ERRORS.labels(scanner.name).inc()
            THROTTLE.warning((self.client.keys.namespace, "scanner", scanner.name),
                             "scanner %s failed (%d in a row), next try in %.1fs: %s: %s", scanner.name,
                             failures, delay_s, type(e).__name__, e, exc_info=failures == 1)
            return delay_s
        self.failures[scanner.name] = 0
        return scanner.interval_s

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
