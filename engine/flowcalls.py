"""Python wrappers for the flow FCALLs (``lua/40_flows.lua``); replies decode in ``engine/replies.py``."""

from __future__ import annotations

from engine import replies
from engine.calls import FCall
from engine.executions import id_partition
from keys import KIND_FLOW, KeySpace


def flow_partition(ks: KeySpace, flow_id: str) -> int:
    return id_partition(ks, flow_id, KIND_FLOW)


def flow_key(ks: KeySpace, flow_id: str) -> str:
    return ks.flow(flow_partition(ks, flow_id), flow_id)


def submit(ks: KeySpace, flow_id: str, name: str, labels: str, steps: str, final: bool,
           parent: str = "") -> FCall:
    return FCall("flow_submit", (flow_key(ks, flow_id),),
                 (flow_id, name, labels, steps, int(final), parent),
                 parse=replies.flow_submit)


def seal(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_seal", (flow_key(ks, flow_id),), (max_count,),
                 parse=replies.flow_seal)


def cancel(ks: KeySpace, flow_id: str, max_count: int, reason: str) -> FCall:
    return FCall("flow_cancel", (flow_key(ks, flow_id),), (max_count, reason),
                 parse=replies.flow_cancel)


def pause(ks: KeySpace, flow_id: str) -> FCall:
    return FCall("flow_pause", (flow_key(ks, flow_id),), (), parse=replies.flow_pause)


def resume(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_resume", (flow_key(ks, flow_id),), (max_count,),
                 parse=replies.flow_resume)


def retry(ks: KeySpace, flow_id: str, max_count: int) -> FCall:
    return FCall("flow_retry", (flow_key(ks, flow_id),), (max_count,),
                 parse=replies.flow_retry)
