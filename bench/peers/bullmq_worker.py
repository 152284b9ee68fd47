"""A BullMQ worker process (``python -m bench.peers.bullmq_worker CONCURRENCY``).

BullMQ's Python package has no worker command: its docs start a ``Worker``
inside an asyncio program, which is what this is. One processor serves every
job name; the flow nodes read their children's results with
``job.getChildrenValues()`` (in a BullMQ flow the children run first and the
parent gets their results). ``fanroot`` is the "1" of 1 -> N -> 1: it adds
the N -> 1 part as a flow from inside the handler, each child getting the
root's result, with the join's id chosen by the client (``data["join_id"]``)
so the client can wait for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from bullmq import FlowProducer, Worker

from bench.peers.workers import URL_ENV, beacon_send

QUEUE = "bench"
URL = os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")
_flows: FlowProducer | None = None


async def _children_values(job: Any) -> list[Any]:
    values = await job.getChildrenValues()
    return list(values.values())


async def _fanroot(job: Any) -> int:
    global _flows
    if _flows is None:
        _flows = FlowProducer({"connection": URL})
    data, result = job.data, 1
    children = [{"name": "step", "queueName": QUEUE, "data": {"n": result, "by": i,
                                                                "pad": data["pad"]}}
                for i in range(data["width"])]
    await _flows.add({"name": "total", "queueName": QUEUE, "data": {"pad": data["pad"]},
                      "opts": {"jobId": data["join_id"]}, "children": children})
    return result


async def process(job: Any, token: str) -> Any:
    name, data = job.name, job.data
    if name == "noop":
        return None
    if name == "fail":
        raise ValueError("fails on purpose")
    if name == "fanroot":
        return await _fanroot(job)
    if name == "step":  # a leaf gets n in its data; a chain link gets its one child's result
        n = data["n"] if "n" in data else (await _children_values(job))[0]
        return n + data.get("by", 1)
    if name == "total":
        return sum(await _children_values(job))
    raise ValueError(f"unknown job name {name!r}")


async def main(concurrency: int) -> None:
    worker = Worker(QUEUE, process, {"connection": URL, "concurrency": concurrency})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await asyncio.sleep(0.2)  # let the worker's run loop issue its first fetch
    beacon_send("ready")
    await stop.wait()
    await worker.close()
    if _flows is not None:
        await _flows.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
