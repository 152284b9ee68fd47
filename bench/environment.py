"""Where a benchmark ran: machine, Python, server, git revision."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.server import Target

REPO = Path(__file__).resolve().parent.parent


def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": (_proc_field("/proc/cpuinfo", "model name") or platform.processor()
                      or "unknown"),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(int(mem_kb.split()[0]) / 1024 / 1024, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        # Other processes compete for the same cores: a busy machine skews every number.
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def server(target: Target) -> dict[str, Any]:
    client = target.node_client(target.primaries[0])
    try:
        info = client.info("server")
    finally:
        client.close()
    name = str(info.get("server_name") or ("valkey" if "valkey_version" in info else "redis"))
    return {
        "name": name,
        "version": str(info.get("valkey_version") or info.get("redis_version")),
        "mode": target.mode,
        "primaries": len(target.primaries),
        "embedded": target.embedded,
        "url": target.url,
    }


def git_revision() -> str:
    """``git rev-parse --short HEAD`` (with ``-dirty`` for local changes), else "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else (rev or "unknown")
