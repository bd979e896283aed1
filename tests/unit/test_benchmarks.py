"""The benchmarks the docs render from run at small sizes and record what they measured (``--json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, out: Path) -> dict:
    """Run ``benchmarks/<script>`` with ``args`` and ``--json out``; returns the record it wrote."""
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args, "--json", str(out)], cwd=REPO, check=True)
    return json.loads(out.read_text())


def test_aggregate_benchmark_runs_on_the_current_aggregate_and_records_its_rows(tmp_path):
    # it had fallen behind summary_tables (no "controls" output) and failed with a KeyError
    record = run("aggregate_1m.py", "--rows", "4800", "--n-boot", "100", out=tmp_path / "aggregate.json")
    result = record["result"]
    assert 0.9 * 4800 <= result["rows"] <= 4800 and result["files"] == 24 and result["n_boot"] == 100
    assert result["aggregate_s"] > 0 and record["command"].startswith("python benchmarks/aggregate_1m.py")


def test_paper_cost_scales_training_hours_with_the_assumed_utilisation(tmp_path):
    half = run("paper_cost.py", "--mfu", "0.2", out=tmp_path / "half.json")["result"]
    full = run("paper_cost.py", "--mfu", "0.4", out=tmp_path / "full.json")["result"]
    assert half["hours_train"] == pytest.approx(2 * full["hours_train"], rel=1e-9)
    assert half["hours_score"] == pytest.approx(2 * full["hours_score"], rel=1e-9)
    assert half["hours_load"] == full["hours_load"] == full["gpu_jobs"] * full["load_minutes"] / 60 > 0
