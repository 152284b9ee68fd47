"""The Lua library and its Python side agree: headers, error codes, states, key names."""

import inspect
import json
import re

from lupa import lua51
from redis.crc import key_slot

from engine.calls import FCall
from engine.errors import REJECTION_CLASSES
from engine.executions import SIGNATURES
from engine.library import library, lua_files
from engine.states import (
    EXECUTION_TRANSITIONS,
    FLOW_TRANSITIONS,
    INITIAL_EXECUTION_STATES,
    SLICE_TRANSITIONS,
    WANT_TRANSITIONS,
)
from keys import KeySpace
from tests.conftest import fake_client

HEADER = re.compile(r"--\[\[ (\w+):(.*?)\]\]", re.S)


def _headers():
    out = {}
    for _, text in lua_files():
        for name, body in HEADER.findall(text):
            out[name] = body
    return out


def _registered():
    return set(re.findall(r"register\('(\w+)'", "\n".join(t for _, t in lua_files())))


def test_every_registered_function_has_a_header_matching_its_python_wrapper():
    headers = _headers()
    for name in _registered():
        assert name in headers, f"{name} has no header comment"
        body = headers[name]
        keys = tuple(k for _, k in sorted((int(i), k) for i, k in re.findall(r"KEYS\[(\d+)\] (\w+)", body)))
        argv = tuple(a for _, a in sorted((int(i), a) for i, a in re.findall(r"ARGV\[(\d+)\] (\w+)", body)))
        assert (keys, argv) == SIGNATURES[name], name
        assert "Reply:" in body, name
    assert _registered() | {"flowslot_version"} == set(SIGNATURES)


def test_every_error_code_raised_in_lua_has_one_exception_class():
    source = library().source
    raised = set(re.findall(r"raise\('([A-Z_]+)'", source))
    assert raised, "no error codes found"
    assert raised <= set(REJECTION_CLASSES), raised - set(REJECTION_CLASSES)
    documented = set(re.findall(r"Errors: ([A-Z_, ]+)", source))
    for line in documented:
        for code in line.replace(" ", "").split(","):
            assert code in REJECTION_CLASSES, code


def test_state_tables_in_lua_and_python_are_the_same_table():
    client = fake_client("parity")
    tables = json.loads(client.run(FCall("flowslot_states", (), read_only=True)))

    def normalise(table):  # cjson encodes an empty Lua table as {}
        return {state: sorted(targets or {}) for state, targets in table.items()}

    assert normalise(tables["execution"]) == {s.value: sorted(t.value for t in targets)
                                             for s, targets in EXECUTION_TRANSITIONS.items()}
    assert normalise(tables["flow"]) == {s.value: sorted(t.value for t in targets)
                                        for s, targets in FLOW_TRANSITIONS.items()}
    assert sorted(tables["initial"]) == sorted(s.value for s in INITIAL_EXECUTION_STATES)
    assert normalise(tables["want"]) == {s.value: sorted(t.value for t in targets)
                                        for s, targets in WANT_TRANSITIONS.items()}
    assert normalise(tables["slice"]) == {s.value: sorted(t.value for t in targets)
                                         for s, targets in SLICE_TRANSITIONS.items()}


# -- keys: lua/00_helpers.lua's K helpers against keys/schema.py's KeySpace --

# KeySpace methods that return a key but have no Lua helper, and why.
NOT_BUILT_IN_LUA = {
    "prefix": "the partition prefix itself: Lua takes it from a KEYS entry (prefix_of)",
    "config": "deployment settings, read and written by Python only",
    "daemons": "reaches Lua only as KEYS[1] of own_heartbeat",
    "promote_pass": "the workers' promotion-pass lock, set and read by Python only (engine/promoter.py)",
    "hint": "hint lists are pushed and popped by Python (engine/hints.py)",
    "idempotency": "built in Python, passed as KEYS[4] of exec_submit; rec_purge reads its name from the execution",
    "owner": "reaches Lua only as KEYS[1] of own_claim and own_release",
    "event_seen": "reaches Lua only as KEYS[3] of event_deliver",
    "secrets": "signing keys, read by Python (engine/signing.py); reaches Lua only as KEYS[1] of secrets_rotate",
}
HELPER_LINE = re.compile(r"^function K\.(\w+)\(prefix(?:, \w+)*\) return .+ end$")


def _helpers_source():
    name, text = lua_files()[0]
    assert name == "00_helpers.lua"
    return text


def _lua_helpers():
    """K and probe_key as lua/00_helpers.lua defines them, run by a Lua 5.1 (the server's Lua)."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    k, probe_key = lua.execute(_helpers_source() + "\nreturn K, probe_key")
    return dict(k.items()), probe_key


def _key_methods():
    """Every KeySpace method that returns a key: name -> its parameters after the partition."""
    out = {}
    for name, fn in inspect.getmembers(KeySpace, inspect.isfunction):
        sig = inspect.signature(fn)
        if name.startswith("_") or sig.return_annotation not in ("str", str):
            continue
        out[name] = [p for p in sig.parameters if p not in ("self", "partition")]
    return out


def _sample_args(params):
    return [f"{param}:7" for param in params]


def test_every_lua_key_helper_builds_the_key_its_keyspace_method_builds():
    helpers, _ = _lua_helpers()
    methods = _key_methods()
    assert helpers, "no K helpers found"
    for ks in (KeySpace(), KeySpace(namespace="acme", partitions=64)):
        for partition in (0, ks.partitions - 1):
            for name, helper in helpers.items():
                assert name in methods, f"K.{name} has no KeySpace method of the same name"
                args = _sample_args(methods[name])
                assert helper(ks.prefix(partition), *args) == getattr(ks, name)(partition, *args), name


def test_every_keyspace_key_has_a_lua_helper_or_is_built_in_python_only():
    helpers, _ = _lua_helpers()
    methods = set(_key_methods())
    assert not set(helpers) & set(NOT_BUILT_IN_LUA)
    assert set(helpers) | set(NOT_BUILT_IN_LUA) == methods, (
        f"without a K helper: {sorted(methods - set(helpers) - set(NOT_BUILT_IN_LUA))}; "
        f"listed but not a KeySpace key: {sorted(set(NOT_BUILT_IN_LUA) - methods)}")


def test_every_lua_key_helper_is_one_line_in_the_helpers_file_and_is_used():
    helpers, _ = _lua_helpers()
    defined = [m[1] for m in map(HELPER_LINE.match, _helpers_source().splitlines()) if m]
    assert sorted(defined) == sorted(helpers), "a K helper not in the one-line form"
    source = library().source
    for name in helpers:
        calls = len(re.findall(rf"\bK\.{name}\(", source)) - source.count(f"function K.{name}(")
        assert calls > 0, f"K.{name} is never called"
    for name, text in lua_files()[1:]:
        assert not re.search(r"\bK\.\w+\s*=|function K\.", text), f"{name} defines a K helper"


def test_the_slot_probe_shares_the_slot_of_the_key_it_guards():
    _, probe_key = _lua_helpers()
    ks = KeySpace()
    assert probe_key(ks.execution(5, "E")) == ks.probe(5)
    assert probe_key(ks.flow_held(5, "F")) == ks.probe(5)
    for key in (ks.daemons(), ks.config()):
        assert probe_key(key) != key
        assert key_slot(probe_key(key).encode()) == key_slot(key.encode())


def _code_lines(text):
    """(line number, code) of a Lua file without its comments (no Lua string here holds '--')."""
    text = re.sub(r"--\[\[.*?\]\]", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)
    return [(n, re.sub(r"--.*", "", line)) for n, line in enumerate(text.splitlines(), 1)]


def _suffix_pieces():
    """The literal pieces of every KeySpace key after its prefix: 'x:', 'delayed', ':held', ..."""
    ks, pieces = KeySpace(), set()
    for name, params in _key_methods().items():
        if name in NOT_BUILT_IN_LUA and name != "idempotency":
            continue
        args = _sample_args(params)
        rest = getattr(ks, name)(0, *args)[len(ks.prefix(0)):]
        for arg in args:
            rest = rest.replace(arg, "\0")
        pieces.update(p for p in rest.split("\0") if p)
    return pieces


def hand_spelled_keys(text, pieces):
    """Lines that join a key by hand instead of calling a K helper."""
    alternatives = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True))
    rules = [
        r"\bpkey\s*\(",                               # the helper K replaced
        r"\b(prefix|p)\s*\.\.",                       # something joined to a partition prefix
        r"prefix_of\([^()]*\)\s*\.\.",
        r"\bkeys\[\d+\]\s*\.\.",                      # a suffix joined to a KEYS entry
        r"\.\.\s*':\w",                               # a ':suffix' joined to a key (fkey .. ':held')
        rf"'({alternatives})'\s*\.\.|\.\.\s*'({alternatives})'",  # a key's own suffix joined to anything
    ]
    found = []
    for n, line in _code_lines(text):
        if HELPER_LINE.match(line.strip()):
            continue
        if any(re.search(rule, line) for rule in rules):
            found.append(f"{n}: {line.strip()}")
    return found


def test_the_scan_for_hand_spelled_keys_finds_the_spellings_it_replaced():
    pieces = _suffix_pieces()
    assert {"x:", "ready:", "delayed", "in:", "f:", ":held", "probe", "idem:"} <= pieces
    by_hand = [
        "local in_key = prefix .. 'in:' .. child_id",
        "rcall('LLEN', p .. 'out:' .. id)",
        "rcall('ZADD', flow_key(prefix, e.flow) .. ':held', score, e.id)",
        "local done = fkey .. ':done'",
        "local steps_key = keys[1] .. ':steps'",
        "local counts = pkey(prefix, 'counts')",
        "rcall('ZADD', pkey(prefix_of(keys[1]), 'leases'), expiry, f.id)",
        "local k = base .. 'inp:' .. id",
        "local k = tag .. 'probe'",
    ]
    assert len(hand_spelled_keys("\n".join(by_hand), pieces)) == len(by_hand)
    not_keys = [
        "rcall('HINCRBY', counts, e.lane .. ':' .. from, -1)",
        "local ops, member = K.flow_ops(prefix), op .. ':' .. fid",
        "local leased = rcall('HINCRBY', fkey, 'c:' .. to, 1)",
        "if f.id then final['x' .. f.id] = i end",
        "rcall('ZREM', K.flow_ops(prefix), 'seal:' .. fid, 'cancel:' .. fid)",
        "raise('NOT_FOUND', 'no execution ' .. keys[1])",
        "-- reads inp:<id> .. 'in:' in a comment",
    ]
    assert hand_spelled_keys("\n".join(not_keys), pieces) == []


def test_no_lua_file_joins_a_key_suffix_by_hand():
    pieces = _suffix_pieces()
    found = {name: hand_spelled_keys(text, pieces) for name, text in lua_files()}
    assert not any(found.values()), {name: lines for name, lines in found.items() if lines}


# -- headers: each function's Derived: line names every key it builds ------

# `function name(` assigns a forward-declared local (`local name` above it): lua/15_wants.lua.
FUNCTION_START = re.compile(r"^(?:(?:local )?function (\w+)\(|register\('(\w+)', function\()")
REGISTER_BY_NAME = re.compile(r"^register\('(\w+)', (\w+)[,)]")


def _lua_functions():
    """Top-level Lua functions (name -> code without comments) and registered name -> function.

    A top-level function starts at column 0 and ends at the first later line
    that starts with `end` at column 0; a one-line `local function` ends on its line.
    """
    bodies, registered = {}, {}
    for _, text in lua_files():
        lines = [line for _, line in _code_lines(text)]
        i = 0
        while i < len(lines):
            start, alias = FUNCTION_START.match(lines[i]), REGISTER_BY_NAME.match(lines[i])
            if alias and not start:
                registered[alias[1]] = alias[2]
            if start:
                name = start[1] or start[2]
                if start[2]:
                    registered[name] = name
                end = i
                if not (start[1] and lines[i].rstrip().endswith(" end")):
                    end = next(j for j in range(i + 1, len(lines)) if re.match(r"^end\b", lines[j]))
                body = [re.sub(r"^register\(", "", lines[i])] + lines[i + 1:end + 1]  # not the wrapper
                bodies[name] = bodies.get(name, "") + "\n".join(body)  # rcall is defined once a file
                i = end
            i += 1
    return bodies, registered


def _derived_keys():
    """Registered function -> the K helpers it calls, in its body or in any local function it calls."""
    bodies, registered = _lua_functions()

    def reach(name, seen):
        seen.add(name)
        keys = set(re.findall(r"\bK\.(\w+)\s*\(", bodies[name]))
        for callee in set(re.findall(r"(?<![\w.:])(\w+)\s*\(", bodies[name])):
            if callee in bodies and callee not in seen:
                keys |= reach(callee, seen)
        return keys

    return {name: reach(function, set()) for name, function in registered.items()}


def test_the_derived_keys_of_a_function_include_those_of_the_helpers_it_calls():
    derived = _derived_keys()
    assert set(derived) == _registered()
    assert derived["exec_renew"] == {"leases"}
    # exec_complete -> finish -> maybe_finish_flow -> set_flow_state -> K.flow_done
    assert {"done", "terminal", "flow_done", "flows_done", "events"} <= derived["exec_complete"]
    assert derived["own_claim"] == set()  # the slot probe belongs to register(), not to a function


def test_every_header_names_every_key_its_function_builds_on_its_derived_line():
    headers = _headers()
    for name, keys in _derived_keys().items():
        line = re.search(r"\n  Derived:(.*?)\n  (?:Reply|Errors):", headers[name], re.S)
        assert line, f"{name} has no Derived: line"
        listed = re.sub(r"\([^()]*\)", "", line[1]).replace(",", " ").split()
        if listed == ["none"]:
            listed = []
        assert sorted(listed) == sorted(keys), (
            f"{name}: Derived: lacks {sorted(keys - set(listed))}, names {sorted(set(listed) - keys)} it never builds")


def test_the_defaults_submit_leaves_unstored_are_the_same_in_lua_python_and_the_submit_spec():
    from engine.executions import SubmitSpec
    from engine.handle import SUBMIT_DEFAULTS

    text = dict(lua_files())["10_states.lua"]
    table = re.search(r"local EXEC_DEFAULTS = \{(.*?)\}", text).group(1)
    lua = {k: v for k, v in re.findall(r"(\w+) = (\d+)", table)}
    assert lua == {k: SUBMIT_DEFAULTS[k] for k in lua}
    spec = SubmitSpec("e", "t", "default", "null")
    assert {k: str(getattr(spec, k)) for k in lua} == lua


def test_the_step_options_a_flow_spec_leaves_out_are_the_defaults_lua_and_submit_assume():
    from engine.flows import STEP_SPEC_DEFAULTS
    from engine.handle import STEP_DEFAULTS, SUBMIT_DEFAULTS

    for name in ("priority", "max_attempts", "backoff_ms", "backoff_max_ms"):
        assert str(STEP_SPEC_DEFAULTS[name]) == SUBMIT_DEFAULTS[name]
    assert (STEP_SPEC_DEFAULTS["policy"], str(STEP_SPEC_DEFAULTS["quorum"])) == (
        STEP_DEFAULTS["policy"], STEP_DEFAULTS["quorum"])
    assert (STEP_SPEC_DEFAULTS["optional"], STEP_SPEC_DEFAULTS["deadline_in_ms"]) == (False, 0)
