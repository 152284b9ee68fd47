"""The HTTP API (engine/http, `flowslot serve`) through a real HTTP client against a running server.

Most tests run uvicorn in a thread over ``create_app`` on the real cluster, in
the test's own namespace; the command's own tests run ``flowslot serve`` as a
process.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest
import uvicorn
from click.testing import CliRunner

from engine import App
from engine.cli import main
from engine.cli.serve import listen
from engine.http import create_app
from engine.http.routes import ENVELOPE_BYTES
from engine.localcluster import LocalCluster
from engine.signals import sign
from tests.conftest import TEST_PARTITIONS, snapshot
from tests.waiting import wait_until

pytestmark = pytest.mark.server

KEY = "k-test-0123456789"
OTHER_KEY = "k-other-9876543210"
MAX_PAYLOAD = 1024
BODY_LIMIT = MAX_PAYLOAD + ENVELOPE_BYTES


@dataclass
class Reply:
    status: int
    body: dict
    headers: dict[str, str]

    @property
    def error(self) -> str:
        return self.body["error"]["code"]


class Served:
    """uvicorn serving an ASGI app in a thread on a free loopback port."""

    def __init__(self, asgi) -> None:
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(asgi, log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 10, "uvicorn to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "uvicorn did not stop"
        self.sock.close()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(self, method: str, path: str, body: object = None, *, key: str | None = KEY,
             content_type: str = "application/json", headers: dict[str, str] | None = None) -> Reply:
        """One request; ``body`` is JSON-encoded unless it is bytes (sent as is) or None (no body)."""
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        conn = self.connection()
        try:
            conn.request(method, path, body=data, headers=sent)
            return read(conn)
        finally:
            conn.close()


def read(conn: http.client.HTTPConnection) -> Reply:
    response = conn.getresponse()
    raw = response.read()
    assert response.getheader("Content-Type", "").startswith("application/json"), raw
    return Reply(response.status, json.loads(raw), dict(response.getheaders()))


@pytest.fixture
def app(cluster, namespace):
    app = App(cluster.url, namespace=namespace, partitions=TEST_PARTITIONS, max_payload_bytes=MAX_PAYLOAD)
    yield app
    app.close()


@pytest.fixture
def serve(app):
    """Start the API over the test's App (``serve(**create_app_kwargs)``); stopped at teardown."""
    started: list[Served] = []

    def start(**kwargs: object) -> Served:
        kwargs.setdefault("api_keys", [KEY, OTHER_KEY])
        served = Served(create_app(app, **kwargs))
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def order_flow(app, order_id):
    """A flow whose only step waits for ``payment_received`` of this order."""
    flow = app.flow("order", correlate={"order_id": order_id})
    flow.wait("payment", "payment_received")
    return flow.submit()


def event(order_id, payload=None, **more):
    return {"correlate": {"order_id": order_id}, "payload": payload, **more}


# -- events ------------------------------------------------------------------
def test_an_event_posted_over_http_resumes_the_waiting_step_and_returns_its_id(app, serve):
    api = serve()
    run = order_flow(app, "o-1")
    reply = api.call("POST", "/v1/events/payment_received", event("o-1", {"amount": 42}))
    assert reply.status == 200, reply.body
    assert reply.body == {"outcome": "resumed", "resumed": [run.step_execution("payment")]}
    assert run.result("payment", timeout=5) == {"amount": 42}


def test_an_early_event_is_buffered_and_a_repeated_event_id_is_a_duplicate(app, serve):
    api = serve()
    first = api.call("POST", "/v1/events/payment_received", event("o-2", 7, event_id="psp-1"))
    assert first.status == 200 and first.body == {"outcome": "buffered", "resumed": []}
    again = api.call("POST", "/v1/events/payment_received", event("o-2", 7, event_id="psp-1"))
    assert again.status == 200 and again.body == {"outcome": "duplicate", "resumed": []}
    run = order_flow(app, "o-2")
    assert run.result("payment", timeout=5) == 7  # the buffered event was taken when the wait started


def test_an_event_without_a_payload_field_delivers_null(app, serve):
    api = serve()
    run = order_flow(app, "o-3")
    reply = api.call("POST", "/v1/events/payment_received", {"correlate": {"order_id": "o-3"}})
    assert reply.status == 200 and reply.body["outcome"] == "resumed"
    assert run.result("payment", timeout=5) is None


# -- authentication ----------------------------------------------------------
def test_events_and_reads_need_one_of_the_configured_keys(app, serve):
    api = serve()
    run = order_flow(app, "o-4")
    before = snapshot(app.client)
    for key in (None, "wrong-key", KEY + "x"):
        for method, path, body in (("POST", "/v1/events/payment_received", event("o-4", 1)),
                                   ("GET", f"/v1/flows/{run.id}", None),
                                   ("GET", f"/v1/executions/{run.step_execution('payment')}", None)):
            reply = api.call(method, path, body, key=key)
            assert reply.status == 401 and reply.error == "unauthorized", (key, path, reply.body)
            assert reply.headers["www-authenticate"] == "Bearer"
    assert snapshot(app.client) == before
    assert api.call("GET", f"/v1/flows/{run.id}", key=OTHER_KEY).status == 200  # every configured key works


def test_a_key_in_another_scheme_than_bearer_is_refused(serve):
    api = serve()
    reply = api.call("GET", "/v1/flows/f_0000_0000000000000000000", key=None,
                     headers={"Authorization": f"Basic {KEY}"})
    assert reply.status == 401 and "Bearer" in reply.body["error"]["message"]


def test_with_no_auth_events_and_reads_need_no_key(app, serve):
    api = serve(api_keys=[], no_auth=True)
    run = order_flow(app, "o-5")
    assert api.call("GET", f"/v1/flows/{run.id}", key=None).status == 200
    assert api.call("POST", "/v1/events/payment_received", event("o-5"), key=None).status == 200


def test_the_app_cannot_be_built_without_a_key_unless_no_auth_says_so(app):
    from engine import ContractError

    with pytest.raises(ContractError, match="no API key"):
        create_app(app)
    with pytest.raises(ContractError, match="exclude each other"):
        create_app(app, api_keys=[KEY], no_auth=True)
    with pytest.raises(ContractError, match="visible ASCII"):
        create_app(app, api_keys=["a key with spaces"])
    with pytest.raises(ContractError, match="list of keys"):
        create_app(app, api_keys=KEY)


# -- bad input: a JSON 4xx and nothing written -------------------------------
BAD_EVENTS = [
    # (what, body bytes, content type, status, error code)
    ("malformed JSON", b'{"correlate": {"order_id": ', "application/json", 400, "bad_request"),
    ("NaN is not JSON", b'{"correlate": {"order_id": "o-9"}, "payload": NaN}', "application/json", 400,
     "bad_request"),
    ("not UTF-8", b'{"correlate": {"order_id": "\xff"}}', "application/json", 400, "bad_request"),
    ("a JSON array", b"[]", "application/json", 400, "bad_request"),
    ("an empty body", b"", "application/json", 400, "bad_request"),
    ("text/plain", b'{"correlate": {"order_id": "o-9"}}', "text/plain", 415, "unsupported_media_type"),
    ("form data", b"correlate=o-9", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no correlate", b'{"payload": 1}', "application/json", 400, "bad_request"),
    ("a misspelt field", b'{"correlate": {"order_id": "o-9"}, "paylaod": 1}', "application/json", 400,
     "bad_request"),
    ("a number in the correlation", b'{"correlate": {"order_id": 9}}', "application/json", 400, "bad_request"),
    ("an empty correlation", b'{"correlate": {}}', "application/json", 400, "bad_request"),
    ("17 correlation names", json.dumps({"correlate": {f"k{i}": "v" for i in range(17)}}).encode(),
     "application/json", 400, "bad_request"),
    ("an oversized correlation value", json.dumps({"correlate": {"order_id": "x" * 257}}).encode(),
     "application/json", 400, "bad_request"),
    ("a numeric event id", b'{"correlate": {"order_id": "o-9"}, "event_id": 5}', "application/json", 400,
     "bad_request"),
    ("a payload over the App's limit", json.dumps(event("o-9", "x" * MAX_PAYLOAD)).encode(),
     "application/json", 413, "payload_too_large"),
    ("a body over the limit", json.dumps(event("o-9", "x" * BODY_LIMIT)).encode(), "application/json", 413,
     "payload_too_large"),
]


@pytest.mark.parametrize(("what", "body", "content_type", "status", "code"), BAD_EVENTS,
                         ids=[b[0] for b in BAD_EVENTS])
def test_a_bad_event_gets_a_json_error_and_writes_nothing(app, serve, what, body, content_type, status, code):
    api = serve()
    run = order_flow(app, "o-9")
    before = snapshot(app.client)
    reply = api.call("POST", "/v1/events/payment_received", body, content_type=content_type)
    assert (reply.status, reply.error) == (status, code), reply.body
    assert reply.body["error"]["message"]
    assert snapshot(app.client) == before
    assert run.describe()["steps"][0]["state"] == "waiting"


def test_a_malformed_event_name_is_refused_and_writes_nothing(app, serve):
    api = serve()
    before = snapshot(app.client)
    reply = api.call("POST", "/v1/events/payment%20received", event("o-9"))
    assert (reply.status, reply.error) == (400, "bad_request") and "event name" in reply.body["error"]["message"]
    assert snapshot(app.client) == before


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(app, serve):
    api = serve()
    before = snapshot(app.client)
    conn = api.connection()
    try:
        conn.putrequest("POST", "/v1/events/payment_received")
        conn.putheader("Authorization", f"Bearer {KEY}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(BODY_LIMIT + 1))
        conn.endheaders()  # and no body: the server must answer without waiting for it
        reply = read(conn)
    finally:
        conn.close()
    assert (reply.status, reply.error) == (413, "payload_too_large")
    assert str(BODY_LIMIT) in reply.body["error"]["message"]
    assert snapshot(app.client) == before


def test_a_chunked_body_over_the_limit_is_refused(app, serve):
    api = serve()
    before = snapshot(app.client)
    conn = api.connection()
    try:
        conn.request("POST", "/v1/events/payment_received", body=iter([b"[" + b" " * BODY_LIMIT + b"]"]),
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                     encode_chunked=True)
        reply = read(conn)
    finally:
        conn.close()
    assert (reply.status, reply.error) == (413, "payload_too_large")
    assert snapshot(app.client) == before


# -- routing -----------------------------------------------------------------
def test_an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405(serve):
    api = serve()
    missing = api.call("GET", "/v1/nothing")
    assert (missing.status, missing.error) == (404, "not_found")
    assert missing.body["error"]["message"] == "no route GET /v1/nothing"
    wrong = api.call("GET", "/v1/events/payment_received")
    assert (wrong.status, wrong.error) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"


# -- reads -------------------------------------------------------------------
def test_a_flow_reads_as_its_description(app, serve):
    api = serve()
    run = order_flow(app, "o-6")
    waiting = api.call("GET", f"/v1/flows/{run.id}")
    assert waiting.status == 200
    assert waiting.body["flow"]["id"] == run.id and waiting.body["flow"]["state"] == "running"
    [step] = waiting.body["steps"]
    assert step["step"] == "payment" and step["state"] == "waiting"
    assert step["blockers"][0].startswith('event payment_received {"order_id":"o-6"}')
    app.deliver("payment_received", {"order_id": "o-6"}, 1)
    done = api.call("GET", f"/v1/flows/{run.id}")
    assert done.body["flow"]["state"] == "succeeded" and done.body["steps"][0]["state"] == "succeeded"


def test_an_execution_reads_as_its_fields_with_payload_and_result_decoded(app, serve):
    api = serve()
    handle = app.submit("t.anything", {"n": [1, 2]})
    reply = api.call("GET", f"/v1/executions/{handle.id}")
    assert reply.status == 200
    assert reply.body["id"] == handle.id and reply.body["state"] == "ready"
    assert reply.body["payload"] == {"args": [{"n": [1, 2]}], "kwargs": {}}
    run = order_flow(app, "o-7")
    app.deliver("payment_received", {"order_id": "o-7"}, {"paid": True})
    step = api.call("GET", f"/v1/executions/{run.step_execution('payment')}")
    assert step.body["state"] == "succeeded" and step.body["result"] == {"paid": True}


def test_reading_what_does_not_exist_is_a_404_and_a_malformed_id_a_400(serve):
    api = serve()
    for path in ("/v1/flows/f_0000_0000000000000000000", "/v1/executions/e_0000_0000000000000000000"):
        reply = api.call("GET", path)
        assert (reply.status, reply.error) == (404, "not_found"), reply.body
    for path in ("/v1/flows/nope", "/v1/executions/f_0000_0000000000000000000"):
        reply = api.call("GET", path)
        assert (reply.status, reply.error) == (400, "bad_request"), reply.body


def test_healthz_needs_no_key_and_reports_the_library_of_every_primary(serve):
    api = serve()
    reply = api.call("GET", "/healthz", key=None)
    assert reply.status == 200 and reply.body["ok"] is True
    assert len(reply.body["nodes"]) == 3


def test_a_cluster_that_does_not_answer_is_a_503_for_events_and_healthz(namespace):
    server = LocalCluster(standalone=True).start()
    app = App(server.url, namespace=namespace, partitions=TEST_PARTITIONS)
    api = Served(create_app(app, api_keys=[KEY]))
    try:
        assert api.call("GET", "/healthz").status == 200  # connected
        app.client.router.retry_window_s = 0.5  # how long a call waits for the cluster to come back (10 s)
        server.stop()
        reply = api.call("POST", "/v1/events/payment_received", event("o-8"))
        assert (reply.status, reply.error) == (503, "cluster_unavailable"), reply.body
        assert api.call("GET", "/healthz", key=None).status == 503
    finally:
        api.stop()
        app.close()
        server.stop()


def test_the_app_mounts_inside_another_starlette_service(app):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/flowslot", app=create_app(app, api_keys=[KEY]))])
    api = Served(outer)
    try:
        run = order_flow(app, "o-10")
        reply = api.call("POST", "/flowslot/v1/events/payment_received", event("o-10", 5))
        assert reply.body == {"outcome": "resumed", "resumed": [run.step_execution("payment")]}
        assert api.call("GET", "/flowslot/healthz", key=None).status == 200
    finally:
        api.stop()


# -- signals -----------------------------------------------------------------
def approval_flow(app):
    """A flow whose only step waits for a signal."""
    flow = app.flow("approval")
    flow.wait("approve")
    return flow.submit()


def test_a_signal_needs_no_key_resumes_its_step_and_a_repeat_answers_duplicate(app, serve):
    api = serve()
    run = approval_flow(app)
    token = run.token("approve")
    reply = api.call("POST", f"/v1/signals/{token}", {"payload": {"ok": True}}, key=None)
    assert reply.status == 200, reply.body
    assert reply.body == {"outcome": "resumed", "execution_id": run.step_execution("approve")}
    assert run.result("approve", timeout=5) == {"ok": True}
    before = snapshot(app.client)
    again = api.call("POST", f"/v1/signals/{token}", {"payload": {"ok": True}}, key=None)
    assert again.status == 200 and again.body["outcome"] == "duplicate"
    other = api.call("POST", f"/v1/signals/{token}", {"payload": {"ok": False}}, key=None)
    assert (other.status, other.error) == (409, "invalid_state"), other.body
    assert snapshot(app.client) == before


def test_a_signal_with_an_empty_body_delivers_null(app, serve):
    api = serve()
    run = approval_flow(app)
    reply = api.call("POST", f"/v1/signals/{run.token('approve')}", b"", key=None)
    assert reply.status == 200, reply.body
    assert run.result("approve", timeout=5) is None


def test_a_signal_to_a_canceled_flows_wait_is_a_409(app, serve):
    api = serve()
    run = approval_flow(app)
    token = run.token("approve")
    run.cancel()
    before = snapshot(app.client)
    reply = api.call("POST", f"/v1/signals/{token}", {"payload": 1}, key=None)
    assert (reply.status, reply.error) == (409, "invalid_state") and "canceled" in reply.body["error"]["message"]
    assert snapshot(app.client) == before


BAD_TOKENS = [
    ("garbage", lambda app, run, token: "nope"),
    ("tampered", lambda app, run, token: token[:-2] + ("AA" if not token.endswith("AA") else "BB")),
    ("expired", lambda app, run, token: sign(app.client, run.id, "approve", expires_ms=1)),
]


@pytest.mark.parametrize(("what", "forge"), BAD_TOKENS, ids=[t[0] for t in BAD_TOKENS])
def test_a_bad_signal_token_is_a_403_and_writes_nothing(app, serve, what, forge):
    api = serve()
    run = approval_flow(app)
    token = forge(app, run, run.token("approve"))
    before = snapshot(app.client)
    reply = api.call("POST", f"/v1/signals/{token}", {"payload": 1}, key=None)
    assert (reply.status, reply.error) == (403, "bad_token"), reply.body
    assert snapshot(app.client) == before
    assert run.describe()["steps"][0]["state"] == "waiting"


BAD_SIGNALS = [
    ("malformed JSON", b'{"payload": ', "application/json", 400, "bad_request"),
    ("text/plain", b'{"payload": 1}', "text/plain", 415, "unsupported_media_type"),
    ("a misspelt field", b'{"paylod": 1}', "application/json", 400, "bad_request"),
    ("a payload over the App's limit", json.dumps({"payload": "x" * MAX_PAYLOAD}).encode(), "application/json",
     413, "payload_too_large"),
    ("a body over the limit", json.dumps({"payload": "x" * BODY_LIMIT}).encode(), "application/json", 413,
     "payload_too_large"),
]


@pytest.mark.parametrize(("what", "body", "content_type", "status", "code"), BAD_SIGNALS,
                         ids=[b[0] for b in BAD_SIGNALS])
def test_a_bad_signal_body_gets_a_json_error_and_writes_nothing(app, serve, what, body, content_type, status,
                                                                code):
    api = serve()
    run = approval_flow(app)
    token = run.token("approve")
    before = snapshot(app.client)
    reply = api.call("POST", f"/v1/signals/{token}", body, content_type=content_type, key=None)
    assert (reply.status, reply.error) == (status, code), reply.body
    assert snapshot(app.client) == before


# -- flowslot serve ----------------------------------------------------------
def _counts(metric, outcomes):
    from engine.metrics import REGISTRY

    return {o: REGISTRY.get_sample_value(metric, {"outcome": o}) or 0.0 for o in outcomes}


def test_signals_and_events_the_endpoint_refuses_are_counted_once_as_refused(app, serve):
    api = serve()
    signals_before = _counts("flowslot_signals_total", ("resumed", "refused"))
    events_before = _counts("flowslot_deliveries_total", ("buffered", "refused"))
    token = approval_flow(app).token("approve")
    assert api.call("POST", f"/v1/signals/{token}", b'{"payload": ', key=None).status == 400  # the endpoint
    assert api.call("POST", "/v1/signals/nope", {"payload": 1}, key=None).status == 403  # the engine
    assert api.call("POST", f"/v1/signals/{token}", {"payload": 1}, key=None).status == 200
    assert api.call("POST", "/v1/events/paid", event("o-1"), key=None).status == 401  # the endpoint
    assert api.call("POST", "/v1/events/paid", {"payload": 1}).status == 400  # the endpoint: no correlate
    assert api.call("POST", "/v1/events/bad%20name", event("o-1")).status == 400  # the engine
    assert api.call("POST", "/v1/events/paid", event("o-1")).status == 200
    signals_after = _counts("flowslot_signals_total", ("resumed", "refused"))
    events_after = _counts("flowslot_deliveries_total", ("buffered", "refused"))
    assert {o: signals_after[o] - signals_before[o] for o in signals_after} == {"resumed": 1, "refused": 2}
    assert {o: events_after[o] - events_before[o] for o in events_after} == {"buffered": 1, "refused": 3}


def test_serve_refuses_to_start_without_a_key_in_one_line(cluster, namespace, monkeypatch):
    monkeypatch.delenv("FLOWSLOT_API_KEYS", raising=False)
    result = CliRunner().invoke(main, ["serve", "--url", cluster.url, "--namespace", namespace,
                                       "--partitions", str(TEST_PARTITIONS), "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no API key: pass --api-key KEY or set FLOWSLOT_API_KEYS")
    assert result.output.count("\n") == 1


def test_serve_refuses_a_port_in_use_in_one_line(cluster, namespace):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = CliRunner().invoke(main, ["serve", "--url", cluster.url, "--namespace", namespace,
                                           "--partitions", str(TEST_PARTITIONS), "--port", str(port),
                                           "--api-key", KEY])
    finally:
        taken.close()
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}:")
    assert result.output.count("\n") == 1


def test_serve_takes_its_keys_from_the_environment_hides_tokens_from_its_log_counts_them_and_stops(
        cluster, namespace):
    env = {**os.environ, "FLOWSLOT_API_KEYS": f" {KEY} ,{OTHER_KEY}"}
    with socket.socket() as probe:  # a free port for the metrics endpoint
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--url", cluster.url,
                             "--namespace", namespace, "--partitions", str(TEST_PARTITIONS),
                             "--metrics-port", str(metrics_port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("flowslot serve: listening on http://127.0.0.1:"), first + proc.stderr.read()
        api = Served.__new__(Served)
        api.port = int(first.split(":")[3].split()[0])
        assert api.call("GET", "/healthz", key=None).status == 200
        missing = api.call("GET", "/v1/flows/f_0000_0000000000000000000", key=OTHER_KEY)
        assert (missing.status, missing.error) == (404, "not_found")
        assert api.call("GET", "/v1/flows/f_0000_0000000000000000000", key=None).status == 401
        api.call("POST", "/v1/signals/secret-token-abc", {"payload": 1}, key=None)
        conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        conn.request("GET", "/metrics")
        scraped = conn.getresponse().read().decode()
        assert 'flowslot_signals_total{outcome="refused"} 1.0' in scraped, scraped
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert "GET /healthz 200" in log
    assert re.search(r"POST /v1/signals/<token> \d{3}", log) and "secret-token-abc" not in log
