"""Python wrappers for the flow FCALLs (``lua/40_flows.lua``)."""

from __future__ import annotations

from typing import Any

from engine.calls import FCall
from engine.executions import id_partition
from keys import KIND_FLOW, KeySpace


def flow_partition(ks: KeySpace, flow_id: str) -> int:
    return id_partition(ks, flow_id, KIND_FLOW)


def flow_key(ks: KeySpace, flow_id: str) -> str:
    return ks.flow(flow_partition(ks, flow_id), flow_id)


def _ready(reply: Any) -> list[tuple[str, str]]:
    return [(i, lane) for i, lane in reply]


def submit(ks: KeySpace, flow_id: str, name: str, labels: str, steps: str, final: bool,
           parent: str = "") -> FCall:
    return FCall("flow_submit", (flow_key(ks, flow_id),),
                 (flow_id, name, labels, steps, int(final), parent),
                 parse=lambda r: (r[0], bool(r[1]), _ready(r[2]), list(r[3]), int(r[4])))


def seal(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_seal", (flow_key(ks, flow_id),), (max_count,),
                 parse=lambda r: (_ready(r[0]), int(r[1])))


def cancel(ks: KeySpace, flow_id: str, max_count: int, reason: str) -> FCall:
    return FCall("flow_cancel", (flow_key(ks, flow_id),), (max_count, reason),
                 parse=lambda r: (r[0], int(r[1])))


def pause(ks: KeySpace, flow_id: str) -> FCall:
    return FCall("flow_pause", (flow_key(ks, flow_id),), ())


def resume(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_resume", (flow_key(ks, flow_id),), (max_count,),
                 parse=lambda r: (r[0], list(r[1]), int(r[2])))


def retry(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_retry", (flow_key(ks, flow_id),), (max_count,),
                 parse=lambda r: (bool(r[0]), _ready(r[1]), list(r[2])))
