"""The periodic scanners that repair whatever a crash left half-done."""

from reconciler.loop import Reconciler
from reconciler.ownership import Ownership
from reconciler.scanners import (
    SCANNERS,
    DeadlineExpiry,
    DelayedPromoter,
    DependencyScanner,
    FlowRetention,
    HintRepair,
    IndexCheck,
    LeaseExpiry,
    OutboxScanner,
    Retention,
    Scanner,
    ScanResult,
    UnsealedFlows,
    default_scanners,
)

__all__ = [
    "SCANNERS", "DeadlineExpiry", "DelayedPromoter", "DependencyScanner", "FlowRetention", "HintRepair", "IndexCheck",
    "LeaseExpiry", "OutboxScanner", "Ownership", "Reconciler", "Retention", "ScanResult", "Scanner", "UnsealedFlows",
    "default_scanners",
]
