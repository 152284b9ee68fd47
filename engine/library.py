"""The Lua function library: assembled from ``lua/*.lua``, versioned by hash.

The files are concatenated in name order (``00_helpers.lua`` first) into one
library named ``flowslot``; a last function, ``flowslot_version``, returns the
SHA-1 of that body, so a connect can tell a stale library from ours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

LIBRARY_NAME = "flowslot"
VERSION_FUNCTION = "flowslot_version"


@dataclass(frozen=True)
class Library:
    source: str
    version: str


def lua_files() -> list[tuple[str, str]]:
    """(name, text) of every Lua file, in load order."""
    root = resources.files("lua")
    files = sorted((p for p in root.iterdir() if p.name.endswith(".lua")), key=lambda p: p.name)
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


@lru_cache(maxsize=1)
def library() -> Library:
    """The library source and its version hash."""
    return assemble(lua_files())


def assemble(files: list[tuple[str, str]]) -> Library:
    """The library made of ``files`` ((name, text), in load order): this package's, or another
    revision's (``flowslot bench lua-cost --rev``)."""
    body = "\n".join(f"-- ==== {name} ====\n{text}" for name, text in files)
    version = hashlib.sha1(body.encode()).hexdigest()
    source = (
        f"#!lua name={LIBRARY_NAME}\n{body}\n"
        f"--[[ {VERSION_FUNCTION}: the SHA-1 of this library's source.\n"
        f"  KEYS: none   ARGV: none   Reply: hex digest ]]\n"
        f"redis.register_function{{function_name='{VERSION_FUNCTION}', "
        f"callback=function() return '{version}' end, flags={{'no-writes'}}}}\n"
    )
    return Library(source=source, version=version)
