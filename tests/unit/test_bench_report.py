"""The bench's text report: a scenario without per-system rows prints its own figures, not an
empty table and "None tasks"."""

from __future__ import annotations

from bench.report import to_table

FRAME = {"machine": {"cpu_model": "cpu", "cpu_count": 2, "memory_gb": 23.5, "load_avg_1m": 0.4, "python": "3.11"},
         "server": {"name": "valkey", "version": "9.1.2", "mode": "cluster", "primaries": 3, "embedded": True},
         "git": "abc"}


def test_a_scenario_without_rows_prints_its_figures_and_no_empty_table_or_none_sizes():
    text = to_table({"scenario": "waits", "tasks": None, "workers": None, "concurrency": None,
                     "payload_bytes": None, "bytes_per_waiting_step": 1397, "deliveries": [{"threads": 1}],
                     "notes": ["a note"], **FRAME})
    assert text.splitlines()[0] == "waits"
    assert "None" not in text and "ops/s" not in text
    assert "bytes_per_waiting_step: 1397" in text and 'deliveries: [{"threads": 1}]' in text
    assert text.endswith("note: a note")


def test_a_scenario_with_rows_prints_its_sizes_and_the_table():
    text = to_table({"scenario": "chain", "tasks": 200, "workers": 2, "concurrency": 16, "payload_bytes": 100,
                     "c=1": {"ops_per_s": 140.0, "p50_ms": 6.5}, **FRAME})
    assert text.splitlines()[0] == "chain: 200 tasks, 2 worker processes x 16 threads, payload 100 B"
    assert "ops/s" in text and "140.0" in text and "c=1" in text
