"""An FCALL as a value: which function, which keys, which arguments.

Wrappers in ``engine/executions.py`` build these; the router sends them one by
one or pipelined per node. The slot comes from the first key, since every key
of one call shares a hash tag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keys import key_slot


def _identity(reply: Any) -> Any:
    return reply


@dataclass(frozen=True)
class FCall:
    function: str
    keys: Sequence[str]
    args: Sequence[Any] = ()
    parse: Callable[[Any], Any] = field(default=_identity, compare=False)
    read_only: bool = False
    slot: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot", key_slot(self.keys[0]) if self.keys else -1)

    def command(self) -> tuple[Any, ...]:
        verb = "FCALL_RO" if self.read_only else "FCALL"
        return (verb, self.function, len(self.keys), *self.keys, *self.args)
