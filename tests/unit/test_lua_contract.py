"""The Lua library and its Python side agree: headers, error codes, states, key names."""

import json
import re

from engine.errors import REJECTION_CLASSES
from engine.executions import SIGNATURES
from engine.library import library, lua_files
from engine.states import EXECUTION_TRANSITIONS, FLOW_TRANSITIONS, INITIAL_EXECUTION_STATES
from engine.calls import FCall
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


def test_lua_key_helpers_spell_the_same_names_as_keys_schema():
    helpers = next(text for name, text in lua_files() if name.startswith("00_"))
    spelled = dict(re.findall(r"function K\.(\w+)\(prefix, \w+\) return prefix \.\. '([a-z_]+):'", helpers))
    spelled["exec"] = spelled.pop("execution")
    assert {k: spelled[k] for k in ("exec", "done", "ready")} == {"exec": "x", "done": "done", "ready": "ready"}
    from keys import KeySpace

    ks = KeySpace()
    prefix = ks.prefix(3)
    assert ks.execution(3, "ID") == prefix + spelled["exec"] + ":ID"
    assert ks.done(3, "ID") == prefix + spelled["done"] + ":ID"
    assert ks.ready(3, "L") == prefix + spelled["ready"] + ":L"
    for suffix, builder in {"counts": ks.counts, "events": ks.events, "leases": ks.leases,
                            "delayed": ks.delayed, "deadlines": ks.deadlines,
                            "terminal": ks.terminal}.items():
        assert f"function K.{suffix}(prefix) return prefix .. '{suffix}' end" in library().source, suffix
        assert builder(3) == prefix + suffix
