"""References between flow steps, carried beside the arguments, never inside them.

A step's payload is ``{"args": [...], "kwargs": {...}, "refs": [[path, step], ...]}``.
Each path (``["args", 0, "key"]``) locates a position in the arguments whose
stored value is ``null``; the worker puts the upstream step's input (or
``None`` when there is none) there. The user's values are stored exactly as
given, so no value, whatever its shape (a webhook's JSON, a dict that looks
like a marker), is ever read as engine syntax.

The same walk checks what JSON would otherwise bend silently or fail on
deep inside the encoder: dict keys must be strings, nesting is bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from engine.codec import encode
from engine.errors import ContractError, NotSerializable

if TYPE_CHECKING:
    from engine.flows import FlowBuilder

MAX_NESTING = 200  # levels of lists and dicts inside one argument

Path = list[str | int]
# (key, parent): a path built without copying; Union because "_Link" | None is not an expression
_Link = Union[tuple[str | int, "_Link"], None]  # noqa: UP007


@dataclass(frozen=True)
class Ref:
    """A reference to a step's result inside another step's arguments."""

    flow: FlowBuilder | None  # None: a reference made by a running step to its own flow
    step: str
    kind: str  # "ref" or "ref_or_default"
    default: Any = None


def _path(link: _Link) -> Path:
    out: Path = []
    while link is not None:
        key, link = link
        out.append(key)
    return out[::-1]


def shown(path: Path) -> str:
    """``args[0]['key']``: where in the arguments a problem is."""
    head, *rest = path
    return str(head) + "".join(f"[{key!r}]" for key in rest)


def find(args: Sequence[Any], kwargs: dict[str, Any]) -> list[tuple[Path, Ref]]:
    """Every Ref in the arguments with its path (lists, tuples and dicts, at any depth).

    Raises ContractError for a dict key that is not a string and NotSerializable
    for nesting deeper than MAX_NESTING (a cycle included). Iterative, so a
    deep value cannot overflow the stack here.
    """
    found: list[tuple[Path, Ref]] = []
    stack: list[tuple[Any, _Link, int]] = [(args, ("args", None), 0), (kwargs, ("kwargs", None), 0)]
    while stack:
        value, link, depth = stack.pop()
        if isinstance(value, Ref):
            found.append((_path(link), value))
            continue
        if depth > MAX_NESTING:
            raise NotSerializable(f"arguments are nested more than {MAX_NESTING} levels deep "
                                  f"(or hold a cycle) at {shown(_path(link))}")
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise ContractError(f"dict keys in arguments must be strings, got {key!r} "
                                        f"({type(key).__name__}) in {shown(_path(link))}")
            items: Any = value.items()
        else:
            items = enumerate(value)
        for key, item in items:
            if isinstance(item, (list, tuple, dict, Ref)):
                stack.append((item, (key, link), depth + 1))
    return found


def _null_for_ref(value: Any) -> None:
    if isinstance(value, Ref):
        return None  # its position is listed in "refs"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_payload(args: Sequence[Any], kwargs: dict[str, Any], refs: list[tuple[Path, Ref]], *,
                   limit_bytes: int, what: str) -> str:
    """The stored payload: the arguments as given, null where each Ref was, and the refs beside them."""
    payload: dict[str, Any] = {"args": args, "kwargs": kwargs}
    if refs:
        payload["refs"] = [[path, ref.step] for path, ref in refs]
    return encode(payload, limit_bytes=limit_bytes, what=what, default=_null_for_ref)


def substitute(args: list[Any], kwargs: dict[str, Any], refs: Any, inputs: dict[str, Any]) -> None:
    """The worker's side: put each upstream input (None when absent) at its path, in place."""
    root: dict[str, Any] = {"args": args, "kwargs": kwargs}
    if not isinstance(refs, list):
        raise ContractError(f"malformed refs in payload: {refs!r}")
    for entry in refs:
        try:
            path, step = entry
            if not isinstance(path, list) or len(path) < 2:
                raise ValueError("a path names a position inside args or kwargs")
            container: Any = root
            for key in path[:-1]:
                container = container[key]
            if isinstance(container, list) and not isinstance(path[-1], int):
                raise TypeError("list index")
            container[path[-1]] = inputs.get(step)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise ContractError(f"malformed reference {entry!r} in payload") from e
