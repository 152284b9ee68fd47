"""Every FCALL reply decodes into named fields, in one module, for every function of the library."""

from __future__ import annotations

import pytest

from engine import dispatcher, flowcalls, replies
from engine import executions as X
from engine.errors import StaleLease
from keys import new_id
from tests.conftest import fake_client

P = 2


def test_every_function_of_the_library_has_exactly_one_parser():
    assert set(replies.PARSERS) == set(X.SIGNATURES)
    for name, parser in replies.PARSERS.items():
        assert parser is getattr(replies, name)


def wrapper_calls(client):
    ks = client.keys
    eid, fid = new_id("e", P), new_id("f", P)
    spec = X.SubmitSpec(eid, "t", "default", "{}")
    return [
        X.submit(ks, spec, P), X.submit_many(ks, P, [spec]), X.claim(ks, P, "default", 1, 1000, "w"),
        X.renew(ks, eid, "1", 1000),
        X.complete(ks, eid, "1", "1"), X.fail(ks, eid, "1", "E", "m", True, 0.5), X.release(ks, eid, "1"),
        X.cancel(ks, eid), X.promote(ks, P, 10), X.expire_leases(ks, P, 10, 0.5), X.retry(ks, eid),
        flowcalls.submit(ks, fid, "f", "{}", "[]", True), flowcalls.seal(ks, fid, 10),
        flowcalls.cancel(ks, fid, 10, "r"), flowcalls.pause(ks, fid), flowcalls.resume(ks, fid, 10),
        flowcalls.retry(ks, fid, 10), dispatcher.resolve_call(client, eid),
    ]


def test_every_wrapper_decodes_its_reply_with_its_functions_parser(namespace):
    client = fake_client(namespace)
    for call in wrapper_calls(client):
        assert call.parse is replies.PARSERS[call.function], call.function


# Raw replies shaped as the headers in lua/ describe them, and the fields they must land in.
DECODED = [
    ("exec_submit", ["e1", "ready", 1], {"id": "e1", "state": "ready", "created": True}),
    ("exec_cancel", ["leased", "images", 1], {"previous": "leased", "lane": "images", "dispatch": True}),
    ("exec_promote", [3, ["a", "b"]], {"promoted": 3, "lanes": ["a", "b"]}),
    ("exec_complete", ["succeeded", 1, 1], {"state": "succeeded", "first": True, "dispatch": True}),
    ("exec_complete", ["succeeded", 0, 0], {"state": "succeeded", "first": False, "dispatch": False}),
    ("exec_fail", ["delayed", 1, 2500, 0], {"state": "delayed", "first": True, "delay_ms": 2500,
                                            "dispatch": False}),
    ("exec_fail", ["failed", 1, 0, 1], {"state": "failed", "first": True, "delay_ms": 0, "dispatch": True}),
    ("exec_retry", ["failed", "default"], {"previous": "failed", "lane": "default"}),
    ("flow_submit", ["running", 1, ["e1", "a"], ["e2"], 4],
     {"state": "running", "created": True, "ready": [("e1", "a")], "skipped": ["e2"], "roots_left": 4}),
    ("flow_seal", [["e1", "a", "e4", "b"], 0], {"ready": [("e1", "a"), ("e4", "b")], "roots_left": 0}),
    ("flow_resolve", [0, ["e1", "a"], ["e3"], [2, 1, 5, 7], 1],
     {"done": False, "ready": [("e1", "a")], "cascade": ["e3"], "tally": (2, 1, 5, 7), "sent": 1}),
    ("event_deliver", ["resumed", [["e1", 1]], 0, [["m1", "e2"]]],
     {"outcome": "resumed", "resumed": [("e1", True)], "more": False, "sent": [("m1", "e2")]}),
    ("wait_register", ["taken", "m2"], {"outcome": "taken", "sent": "m2"}),
    ("wait_resume", ["stale", "e1", 0], {"outcome": "stale", "execution_id": "e1", "dispatch": False}),
    ("outbox_sweep", [3, [["m1", "{}"]]], {"pruned": 3, "due": [("m1", "{}")]}),
    ("flow_cancel", ["running", 12], {"previous": "running", "remaining": 12}),
    ("flow_resume", ["running", ["a"], 3], {"state": "running", "lanes": ["a"], "remaining": 3}),
    ("flow_retry", [1, ["e1", "a"], ["e2"]], {"done": True, "ready": [("e1", "a")], "skipped": ["e2"]}),
    ("flow_purge", [2, 300], {"flows": 2, "steps": 300}),
    ("rec_audit", [1, [["lease_missing", "e1", "re-added"]], ["a"], ["e2"]],
     {"more": True, "repairs": [("lease_missing", "e1", "re-added")], "lanes": ["a"], "dispatch": ["e2"]}),
]


@pytest.mark.parametrize(("function", "raw", "fields"), DECODED, ids=[d[0] for d in DECODED])
def test_a_reply_lands_in_the_fields_its_lua_header_names(function, raw, fields):
    decoded = replies.PARSERS[function](raw)
    assert {name: getattr(decoded, name) for name in fields} == fields


def test_the_third_element_is_a_dispatch_flag_for_complete_and_a_delay_for_fail():
    assert replies.exec_complete(["succeeded", 1, 1]).dispatch is True
    failed = replies.exec_fail(["delayed", 1, 1, 0])
    assert (failed.delay_ms, failed.dispatch) == (1, False)


def test_list_replies_decode_into_named_records():
    lost = replies.exec_expire_leases([["e1", "ready", "a", 0], ["e2", "failed", "b", 1]])
    assert [(x.id, x.state, x.lane, x.dispatch) for x in lost] == [("e1", "ready", "a", False),
                                                                   ("e2", "failed", "b", True)]
    expired = replies.exec_expire_deadlines([["e1", 1], ["e2", 0]])
    assert [(x.id, x.dispatch) for x in expired] == [("e1", True), ("e2", False)]


def test_a_claim_carries_its_inputs_or_only_their_count_when_paged():
    raw = [5, [["e1", "3", "t", "{}", 2, 0, 99, ["up", "1"], "f1", "s1"],
               ["e2", "4", "t", "{}", 1, 0, 99, 3000, "f1", "s2"]], ["e9"]]
    reply = replies.exec_claim(raw)
    assert (reply.remaining, reply.expired) == (5, ["e9"])
    first, second = reply.claimed
    assert (first.token, first.attempt, dict(first.inputs), first.inputs_paged) == ("3", 2, {"up": "1"}, 0)
    assert (first.flow, first.step) == ("f1", "s1")
    assert (dict(second.inputs), second.inputs_paged) == ({}, 3000)


def test_an_older_librarys_flat_claim_list_decodes_like_a_list_of_entries():
    flat = [5, ["e1", "3", "t", "{}", 2, 0, 99, 1, 0, "up", "1", "f1", "s1",
                "e2", "4", "t", "{}", 1, 0, 99, 0, 3000, "f1", "s2",
                "e3", "1", "t", "{}", 1, 0, 99, 0, 0, "", ""], ["e9"]]
    nested = [5, [["e1", "3", "t", "{}", 2, 0, 99, ["up", "1"], "f1", "s1"],
                  ["e2", "4", "t", "{}", 1, 0, 99, 3000, "f1", "s2"],
                  ["e3", "1", "t", "{}", 1, 0, 99, [], "", ""]], ["e9"]]
    assert replies.exec_claim(flat) == replies.exec_claim(nested)


def test_exec_claims_compact_list_decodes_like_a_list_of_entries_with_the_calls_lease_expiry():
    compact = [5, ["e1", "3", "t", "{}", 2, 0, 1, "up", "1", "f1", "s1",
                   "e2", "4", "t", "{}", 1, 0, -3000, "f1", "s2",
                   "e3", "1", "t", "{}", 1, 7, 0, "",
                   "e4", "2", "t", "{}", 1, 0, 0, "f2", "s4"], ["e9"], 99]
    nested = [5, [["e1", "3", "t", "{}", 2, 0, 99, ["up", "1"], "f1", "s1"],
                  ["e2", "4", "t", "{}", 1, 0, 99, 3000, "f1", "s2"],
                  ["e3", "1", "t", "{}", 1, 7, 99, [], "", ""],
                  ["e4", "2", "t", "{}", 1, 0, 99, [], "f2", "s4"]], ["e9"]]
    assert replies.exec_claim(compact) == replies.exec_claim(nested)


def test_a_step_completions_leased_children_decode_from_claims_compact_list_with_the_calls_lease_expiry():
    compact = ["e1", "3", "t", "{}", 1, 0, 1, "up", "1", "f1", "s1", "e2", "4", "t", "{}", 1, 0, -3000, "f1", "s2"]
    nested = [["e1", "3", "t", "{}", 1, 0, 99, ["up", "1"], "f1", "s1"],
              ["e2", "4", "t", "{}", 1, 0, 99, 3000, "f1", "s2"]]
    one = replies.flow_complete(["succeeded", 1, 0, [], [], compact, ["a", "a"], 0, 99])
    older = replies.flow_complete(["succeeded", 1, 0, [], [], nested, ["a", "a"], 0])
    assert one == older and [c.lease_expiry_ms for c in one.claimed] == [99, 99]
    (many,) = replies.flow_complete_many([["succeeded", 1, 0], [], [], compact, ["a", "a"], 0, 99])
    assert many == one


def test_complete_many_decodes_flat_triples_with_refusals_in_their_place():
    decoded = replies.exec_complete_many(["succeeded", 1, 0, "STALE_LEASE lease 2 is not 3", -1, 0,
                                          "succeeded", 0, 0])
    assert decoded[0] == replies.CompleteReply("succeeded", True, False)
    assert isinstance(decoded[1], StaleLease)
    assert decoded[2] == replies.CompleteReply("succeeded", False, False)


def test_a_real_failed_attempt_names_its_state_delay_and_dispatch_flag(namespace):
    client = fake_client(namespace)
    eid = new_id("e", P)
    client.run(X.submit(client.keys, X.SubmitSpec(eid, "t", "default", "{}", backoff_ms=10_000), P))
    claimed = client.run(X.claim(client.keys, P, "default", 1, 30_000, "w")).claimed[0]
    failed = client.run(X.fail(client.keys, eid, claimed.token, "E", "m", True, 0.5))
    assert isinstance(failed, replies.FailReply)
    assert (failed.state, failed.first, failed.dispatch) == ("delayed", True, False)
    assert 5_000 <= failed.delay_ms <= 10_000


def test_short_execution_records_read_like_long_ones_and_keep_spaces_in_their_detail():
    flat = ["e", "e1 blocked ready f1 ", "e", "e2 leased canceled  canceled by an operator",
            "flow", "f1", "from", "running", "to", "failed", "detail", "a step failed",
            "e", "e3  ready  ", "e", "not a record"]
    assert replies.event_records(flat) == [
        {"id": "e1", "from": "blocked", "to": "ready", "flow": "f1"},
        {"id": "e2", "from": "leased", "to": "canceled", "detail": "canceled by an operator"},
        {"flow": "f1", "from": "running", "to": "failed", "detail": "a step failed"},
        {"id": "e3", "from": "", "to": "ready"},
    ]


def test_a_grouped_record_reads_as_one_transition_per_id_and_keeps_spaces_in_its_detail():
    flat = ["g", "ready leased  3 e1 e2 e3 worker 7", "e", "e4 leased succeeded f1 ",
            "g", " ready f1 2 e5 e6 ", "g", "ready leased  3 e1 e2", "g", "ready leased  x e1 "]
    assert replies.event_records(flat) == [
        {"id": "e1", "from": "ready", "to": "leased", "detail": "worker 7"},
        {"id": "e2", "from": "ready", "to": "leased", "detail": "worker 7"},
        {"id": "e3", "from": "ready", "to": "leased", "detail": "worker 7"},
        {"id": "e4", "from": "leased", "to": "succeeded", "flow": "f1"},
        {"id": "e5", "from": "", "to": "ready", "flow": "f1"},
        {"id": "e6", "from": "", "to": "ready", "flow": "f1"},
    ]  # the last two 'g' fields are malformed (too few ids, no count) and read as nothing


def test_an_event_entry_splits_into_its_execution_and_flow_transitions():
    flat = ["id", "e1", "from", "blocked", "to", "ready", "flow", "f1",
            "flow", "f1", "from", "running", "to", "succeeded", "detail", "every step is terminal",
            "id", "e2", "from", "leased", "to", "failed", "flow", "", "detail", "ValueError"]
    assert replies.event_records(flat) == [
        {"id": "e1", "from": "blocked", "to": "ready", "flow": "f1"},
        {"flow": "f1", "from": "running", "to": "succeeded", "detail": "every step is terminal"},
        {"id": "e2", "from": "leased", "to": "failed", "flow": "", "detail": "ValueError"},
    ]
