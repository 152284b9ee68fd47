"""Prometheus metrics, one registry per process, named ``flowslot_*``.

Counters count what this process did (sum them over processes); queue depth
comes from the cluster's per-lane counters that the Lua transitions keep,
read per owned partition — never from a scan.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EXECUTIONS = Counter("flowslot_executions", "Execution transitions made by this process.",
                     ["event", "lane"], registry=REGISTRY)
FLOWS = Counter("flowslot_flows", "Flows submitted by this process.",
                ["event"], registry=REGISTRY)
DELIVERIES = Counter("flowslot_deliveries", "Events delivered by this process, by outcome "
                     "(resumed, forwarded, buffered, duplicate, refused).", ["outcome"], registry=REGISTRY)
SIGNALS = Counter("flowslot_signals", "Signals received by this process, by outcome "
                  "(resumed, stored, duplicate, refused).", ["outcome"], registry=REGISTRY)
REFUSED = "refused"  # the outcome of a delivery or signal refused with an error: nothing was written
OUTBOX = Counter("flowslot_outbox_messages", "Outbox messages this process applied, or left in the outbox "
                 "on an error (unknown kind, failed target call), by kind and outcome.", ["kind", "outcome"],
                 registry=REGISTRY)
SCANNER_REPAIRS = Counter("flowslot_scanner_repairs", "Stragglers repaired, by scanner.", ["scanner"],
                          registry=REGISTRY)
SCANNER_PASSES = Counter("flowslot_scanner_passes", "Scanner passes, by scanner.", ["scanner"],
                         registry=REGISTRY)
SCANNER_ERRORS = Counter("flowslot_scanner_errors", "Partitions a scanner pass skipped on an error, and "
                         "scanner passes that failed, by scanner.", ["scanner"], registry=REGISTRY)
DISPATCH_CASCADES = Counter("flowslot_dispatch_cascades", "Dispatcher runs.", registry=REGISTRY)
DISPATCH_EDGES = Counter("flowslot_dispatch_edges", "Edges resolved by the dispatcher, by outcome.",
                         ["outcome"], registry=REGISTRY)
CASCADE_SIZE = Histogram("flowslot_dispatch_cascade_size", "Children made ready or skipped per dispatch.",
                         buckets=(0, 1, 2, 5, 10, 50, 100, 500, 1000, 5000), registry=REGISTRY)
CLAIM_TO_START = Histogram("flowslot_claim_to_start_seconds", "From a claim's reply to its handler starting.",
                           registry=REGISTRY)
RUN_TIME = Histogram("flowslot_execution_run_seconds", "Handler run time.", ["lane"], registry=REGISTRY)
FCALL_LATENCY = Histogram("flowslot_fcall_seconds", "Round trip of a batch of FCALLs, by function.",
                          ["function"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
                          registry=REGISTRY)
QUEUE_DEPTH = Gauge("flowslot_queue_depth", "Executions per lane and state in the owned partitions.",
                    ["lane", "state"], registry=REGISTRY)
PARTITIONS_OWNED = Gauge("flowslot_partitions_owned", "Partitions whose reconciler this daemon runs.",
                         registry=REGISTRY)
WANT_SLA_BREACHES = Counter("flowslot_want_sla_breaches", "Wants this process found past their SLA "
                            "(data_timestamp + sla_s) and not satisfied.", registry=REGISTRY)
WANTS = Gauge("flowslot_wants", "Wants per state in the owned partitions.", ["state"], registry=REGISTRY)
