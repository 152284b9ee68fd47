"""``flowslot wants`` and ``flowslot slices`` against a real cluster."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.wants import new_want_id
from reconciler import Reconciler
from reconciler.scanners import WantCycles, WantDeadlines
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until
from tests.wanting import ended

pytestmark = pytest.mark.server


def flowslot(cluster, namespace, *args):
    result = CliRunner().invoke(main, [*args, "--url", cluster.url, "--namespace", namespace,
                                       "--partitions", str(TEST_PARTITIONS)])
    return result


def test_wants_show_says_in_words_what_a_want_waits_for(cluster, namespace, wapp, worker):
    worker()  # lane default only: manual/ stays queued
    want = wapp.want(["above_manual/2026-11-27"], data_timestamp=time.time() - 100, sla_s=10, ttl_s=3600)
    build = wapp.slice("above_manual/2026-11-27")["build"]
    wait_until(lambda: wapp.handle(build).state().value == "waiting", what="the build to find manual/ missing")
    shown = flowslot(cluster, namespace, "wants", "show", want)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == f"want {want} is building"
    assert any(line.strip().startswith("above_manual/2026-11-27: being built by " + build) and
               "waiting for 1 of 1 missing slice(s) to become live" in line for line in lines), shown.output
    assert any("needs manual/2026-11-27 (upstream want" in line for line in lines), shown.output
    assert any("manual/2026-11-27: being built by" in line and "waiting for a worker on lane manual" in line
               for line in lines), shown.output

    passes = Reconciler(wapp.client, [WantDeadlines(), WantCycles(age_s=0)]).run_pass()
    assert passes["want_cycles"].repaired == 0  # waiting for a slice nobody serves is no cycle
    breached = flowslot(cluster, namespace, "wants", "list", "--breached", "--json")
    assert breached.exit_code == 0, breached.output
    assert want in [w["id"] for w in json.loads(breached.output)]

    slice_shown = flowslot(cluster, namespace, "slices", "show", "manual/2026-11-27")
    assert slice_shown.exit_code == 0, slice_shown.output
    assert slice_shown.output.startswith("slice manual/2026-11-27: building")
    assert "1 want(s) waiting" in slice_shown.output

    canceled = flowslot(cluster, namespace, "wants", "cancel", want, "--reason", "no longer needed")
    assert canceled.exit_code == 0, canceled.output
    assert canceled.output.strip() == f"{want}: building -> canceled"
    assert flowslot(cluster, namespace, "wants", "show", want).output.splitlines()[0] == \
        f"want {want} is canceled: canceled: no longer needed"


def test_wants_list_shows_the_newest_wants_and_filters_by_state(cluster, namespace, wapp, worker):
    worker()
    done = wapp.want(["raw/2026-11-28"])
    wait_until(lambda: ended(wapp, done), what="the want to end")
    stuck = wapp.want(["manual/2026-11-28"])
    listed = flowslot(cluster, namespace, "wants", "list", "--json")
    assert [w["id"] for w in json.loads(listed.output)] == [stuck, done]
    only = flowslot(cluster, namespace, "wants", "list", "--state", "satisfied", "--json")
    assert [w["id"] for w in json.loads(only.output)] == [done]
    text = flowslot(cluster, namespace, "wants", "list")
    assert text.exit_code == 0 and stuck in text.output and "manual/2026-11-28" in text.output


def test_an_unknown_want_id_is_a_clear_error(cluster, namespace, wapp):
    for args in (["wants", "show", new_want_id(2)], ["wants", "cancel", new_want_id(2)]):
        result = flowslot(cluster, namespace, *args)
        assert result.exit_code == 1 and "no want" in result.output, result.output
    result = flowslot(cluster, namespace, "wants", "show", "nope")
    assert result.exit_code == 1 and "malformed want id 'nope'" in result.output
    result = flowslot(cluster, namespace, "slices", "show", "nope")
    assert result.exit_code == 1 and "malformed slice name 'nope'" in result.output
