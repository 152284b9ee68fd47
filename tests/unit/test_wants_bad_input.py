"""Bad input to wants gets a clear error at the call, and the keyspace stays exactly as it was."""

from __future__ import annotations

import time
import uuid

import pytest

import tests.apps.wanting as wanting
from engine import App, ContractError, InvalidState, MissingDependencies, NotFound
from engine.wants import new_want_id
from tests.conftest import fake_client, snapshot


@pytest.fixture
def app(namespace):
    client = fake_client(namespace)
    app = App(client=client, namespace=namespace, partitions=client.keys.partitions)
    app.tasks.update(wanting.app.tasks)
    app.producers[:] = wanting.app.producers
    return app


def unchanged(app, call):
    before = snapshot(app.client)
    call()
    assert snapshot(app.client) == before


@pytest.mark.parametrize("name", ["", "noslash", "raw/a b", "raw/{x}", "raw//x", "/raw", "raw/x/",
                                  "raw/" + "x" * 300, "raw/é", 5, None, "{tag}/x"])
def test_a_malformed_slice_name_is_refused(app, name):
    def call():
        with pytest.raises(ContractError, match="malformed slice name"):
            app.want([name])

    unchanged(app, call)


def test_a_slice_nobody_produces_is_refused_naming_the_patterns(app):
    def call():
        with pytest.raises(ContractError, match=r"no producer builds slice 'nobody/2026-11-21' \(producer "
                                                r"patterns: raw/\{date\}"):
            app.want(["raw/2026-11-21", "nobody/2026-11-21"])

    unchanged(app, call)


@pytest.mark.parametrize(("options", "message"), [
    ({"data_timestamp": time.time(), "sla_s": -1}, "sla_s must be"),
    ({"data_timestamp": time.time(), "sla_s": 60, "ttl_s": 30}, r"ttl_s \(30\) is shorter than sla_s \(60\)"),
    ({"sla_s": 60}, "count from data_timestamp"),
    ({"data_timestamp": "yesterday", "sla_s": 60}, "data_timestamp must be"),
    ({"data_timestamp": time.time(), "ttl_s": 0}, "ttl_s must be"),
    ({"force": "yes"}, "force must be True or False"),
    ({"comment": 5}, "comment must be a string"),
])
def test_deadlines_and_options_that_cannot_hold_are_refused(app, options, message):
    def call():
        with pytest.raises(ContractError, match=message):
            app.want(["raw/2026-11-21"], **options)

    unchanged(app, call)


@pytest.mark.parametrize("slices", ["raw/2026-11-21", [], 5, ["raw/x"] * 0])
def test_a_want_takes_a_non_empty_list_of_slices(app, slices):
    def call():
        with pytest.raises(ContractError):
            app.want(slices)

    unchanged(app, call)


def test_unknown_and_malformed_want_ids_are_refused(app):
    def call():
        with pytest.raises(NotFound):
            app.cancel_want(new_want_id(3))
        with pytest.raises(NotFound):
            app.want_status(new_want_id(3))
        with pytest.raises(ContractError, match="malformed want id"):
            app.cancel_want("not-a-uuid")
        with pytest.raises(ContractError, match="names partition"):
            app.want_status(str(uuid.UUID("ffff" + uuid.uuid4().hex[4:])))

    unchanged(app, call)


def test_an_ended_want_cannot_be_canceled(app):
    want = app.want(["raw/2026-11-21"])
    app.cancel_want(want)

    def call():
        with pytest.raises(InvalidState, match="is canceled"):
            app.cancel_want(want)

    unchanged(app, call)


def test_a_slice_being_built_cannot_be_invalidated(app):
    app.want(["raw/2026-11-21"])

    def call():
        with pytest.raises(InvalidState, match="is being built"):
            app.invalidate("raw/2026-11-21")
        with pytest.raises(ContractError, match="malformed slice name"):
            app.invalidate("raw")

    unchanged(app, call)


@pytest.mark.parametrize("pattern", ["noslash", "raw/{d}/{d}", "raw/{d", 5, "{a}/x y"])
def test_a_producer_pattern_that_cannot_name_slices_is_refused(app, pattern):
    with pytest.raises(ContractError):
        app.produces(pattern)


def test_a_slice_matching_two_producers_is_refused(app):
    app.produces("raw/{day}", name="t.other_raw")(lambda day: day)
    with pytest.raises(ContractError, match="matches several producers"):
        app.want(["raw/2026-11-21"])


def test_missing_dependencies_takes_a_list_of_names():
    with pytest.raises(ContractError, match="takes a list of slice names"):
        MissingDependencies("raw/2026-11-21")
    assert MissingDependencies(["a/1", "a/1", "b/2"]).slices == ["a/1", "b/2"]


def test_data_timestamps_are_read_as_utc_whatever_their_type():
    import datetime as dt

    from engine.wants import timestamp_ms

    midnight = 1_795_219_200_000  # 2026-11-21T00:00:00Z
    assert timestamp_ms(dt.date(2026, 11, 21)) == midnight
    assert timestamp_ms(dt.datetime(2026, 11, 21)) == midnight
    assert timestamp_ms(dt.datetime(2026, 11, 21, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == midnight
    assert timestamp_ms(midnight / 1000) == midnight


@pytest.mark.parametrize("stamp", ["2026-11-21", True, [2026, 11, 21], object()])
def test_a_data_timestamp_that_is_no_time_is_refused_naming_what_it_may_be(app, stamp):
    def call():
        with pytest.raises(ContractError, match="data_timestamp must be a datetime, a date or epoch seconds"):
            app.want(["raw/2026-11-21"], data_timestamp=stamp, sla_s=60)

    unchanged(app, call)
