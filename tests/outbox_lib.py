"""A test-only Lua library that sends and applies outbox messages of kind ``t_incr``.

It is lua/00_helpers.lua (``outbox_send``, ``outbox_first``) plus two functions,
loaded beside the flowslot library under another name, so the outbox is tested
through the same helpers the engine's functions call, without any engine kind.
"""

from __future__ import annotations

from typing import Any

from engine import outbox
from engine.calls import FCall
from engine.client import Client
from engine.library import lua_files
from keys import KeySpace

FUNCTIONS = """
register('t_send', function(keys, args)
  local prefix = prefix_of(keys[1])
  local ids = {}
  for i = 1, tonumber(args[1]) do
    ids[#ids + 1] = outbox_send(prefix, args[3], tonumber(args[2]), {n = i})
  end
  return ids
end)
register('t_incr', function(keys, args)
  if not outbox_first(prefix_of(keys[1]), args[1]) then return 'duplicate' end
  rcall('INCRBY', keys[1], args[2])
  return 'applied'
end)
"""


def load(client: Client) -> None:
    source = "#!lua name=fs_outbox_test\n" + lua_files()[0][1] + FUNCTIONS
    for node in client.router.primaries():
        client.router.client(node).function_load(source, replace=True)


def counter(ks: KeySpace, partition: int) -> str:
    return f"{ks.prefix(partition)}t_counter"


def send(client: Client, sender: int, to: int, count: int = 1, kind: str = "t_incr") -> list[str]:
    ids: list[str] = client.run(FCall("t_send", (client.keys.prefix(sender) + "t_any",), (count, to, kind)))
    return ids


@outbox.handler("t_incr")
def _incr(ks: KeySpace, to: int, msg_id: str, body: Any) -> FCall:
    return FCall("t_incr", (counter(ks, to),), (msg_id, body["n"]))
