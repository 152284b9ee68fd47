"""The README's worked example of wants runs as written (on the test cluster, with stand-ins for
the data work it calls)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.worker import Worker
from tests.conftest import TEST_PARTITIONS
from tests.waiting import wait_until

pytestmark = pytest.mark.server

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    text = README.read_text()
    section = text[text.index("## Wants: declare the data you need"):]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_daily_report_example_builds_raw_clean_and_report(cluster, namespace):
    source = example()
    assert "app = App()" in source
    source = source.replace("app = App()", f"app = App({cluster.url!r}, namespace={namespace!r}, "
                                           f"partitions={TEST_PARTITIONS})")
    done: list[str] = []
    scope = {"load_raw": lambda d: done.append(f"raw {d}"), "write_clean": lambda d: done.append(f"clean {d}"),
             "write_report": lambda d: done.append(f"report {d}"), "alert": lambda status: None}
    exec(compile(source, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    app, want_id = scope["app"], scope["want_id"]
    worker = Worker(app, concurrency=2, lease_ms=5000).start()
    try:
        wait_until(lambda: app.want_status(want_id)["state"] == "satisfied", what="the report want")
    finally:
        worker.stop_and_wait()
        app.close()
    day = scope["day"]
    assert done == [f"raw {day}", f"clean {day}", f"report {day}"]
