"""Producers for the wants tests: raw → clean → report, a failing one, cycles, a slow one."""

from __future__ import annotations

import os
import time

from engine import App, MissingDependencies, Retry

app = App()


def _need(*names: str) -> None:
    """Raise MissingDependencies for the named slices that are not live."""
    missing = [n for n in names if app.slice(n)["state"] != "live"]
    if missing:
        raise MissingDependencies(missing)


@app.produces("raw/{date}", name="wanting.raw")
def raw(date: str) -> str:
    time.sleep(float(os.environ.get("WANTING_RAW_SLEEP_S", "0")))
    return f"raw {date}"


@app.produces("clean/{date}", name="wanting.clean")
def clean(date: str) -> str:
    _need(f"raw/{date}")
    return f"clean {date}"


@app.produces("report/{date}", name="wanting.report")
def report(date: str) -> str:
    _need(f"clean/{date}")
    return f"report {date}"


@app.produces("pair/{date}", name="wanting.pair")
def pair(date: str) -> str:
    _need(f"raw/{date}", f"broken/{date}")
    return f"pair {date}"


@app.produces("broken/{date}", name="wanting.broken", retry=Retry(max_attempts=1))
def broken(date: str) -> str:
    raise ValueError(f"no data for {date}")


@app.produces("cyc_a/{k}", name="wanting.cyc_a")
def cyc_a(k: str) -> str:
    _need(f"cyc_b/{k}")
    return "a"


@app.produces("cyc_b/{k}", name="wanting.cyc_b")
def cyc_b(k: str) -> str:
    _need(f"cyc_c/{k}")
    return "b"


@app.produces("cyc_c/{k}", name="wanting.cyc_c")
def cyc_c(k: str) -> str:
    _need(f"cyc_a/{k}")
    return "c"


@app.produces("self/{k}", name="wanting.self")
def itself(k: str) -> str:
    _need(f"self/{k}")
    return "never"


@app.produces("slow/{k}", name="wanting.slow")
def slow(k: str) -> str:
    time.sleep(float(os.environ.get("WANTING_SLOW_S", "3")))
    return "slow"


@app.on_sla_breach
def breached(want_id: str) -> str:
    return want_id


@app.produces("ping/{k}", name="wanting.ping")
def ping(k: str) -> str:
    time.sleep(float(os.environ.get("WANTING_PING_SLEEP_S", "0")))
    _need(f"pong/{k}")
    return "ping"


@app.produces("pong/{k}", name="wanting.pong")
def pong(k: str) -> str:
    _need(f"ping/{k}")
    return "pong"


@app.produces("manual/{date}", name="wanting.manual", lane="manual")
def manual(date: str) -> str:
    return f"manual {date}"


@app.produces("above_manual/{date}", name="wanting.above_manual")
def above_manual(date: str) -> str:
    _need(f"manual/{date}")
    return f"above {date}"


@app.produces("asks_nobody/{k}", name="wanting.asks_nobody")
def asks_nobody(k: str) -> str:
    raise MissingDependencies([f"nobody/{k}"])


@app.produces("across/{date}", name="wanting.across")
def across(date: str) -> str:
    _need(f"manual/{date}.prev")  # another key: most likely another partition
    return f"across {date}"


@app.produces("flaky/{k}", name="wanting.flaky", retry=Retry(max_attempts=1))
def flaky(k: str) -> str:
    if os.environ.get("WANTING_FLAKY_OK") != "1":
        raise ValueError("not yet")
    return "flaky"


def _slow_then_need(name: str) -> None:
    time.sleep(float(os.environ.get("WANTING_TRI_SLEEP_S", "0")))
    _need(name)


@app.produces("tri_a/{k}", name="wanting.tri_a")
def tri_a(k: str) -> str:
    _slow_then_need(f"tri_b/{k}")
    return "a"


@app.produces("tri_b/{k}", name="wanting.tri_b")
def tri_b(k: str) -> str:
    _slow_then_need(f"tri_c/{k}")
    return "b"


@app.produces("tri_c/{k}", name="wanting.tri_c")
def tri_c(k: str) -> str:
    _slow_then_need(f"tri_a/{k}")
    return "c"


@app.produces("hurried/{date}", name="wanting.hurried", deadline_s=1.0)
def hurried(date: str) -> str:
    _need(f"manual/{date}")
    return "hurried"
