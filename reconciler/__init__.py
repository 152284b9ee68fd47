"""The periodic scanners that repair whatever a crash left half-done."""

from reconciler.loop import Reconciler
from reconciler.scanners import DelayedPromoter, LeaseExpiry, ScanResult, Scanner, default_scanners

__all__ = ["DelayedPromoter", "LeaseExpiry", "Reconciler", "ScanResult", "Scanner", "default_scanners"]
