"""benchmarks/same_results.py, the check that a change left a study's results as they were: it agrees
with a copy and finds one changed bit of an adapter, one changed pair score and a missing file, and
ignores only what a rerun always changes (training-log wall-clock metrics)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]


def same_results(old: Path, new: Path) -> subprocess.CompletedProcess:
    """Run the check on two folders; returns the finished process (exit code and output)."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "same_results.py"), str(old), str(new)],
        capture_output=True,
        text=True,
    )


def study(root: Path) -> Path:
    """A results folder with one adapter, one pair-score table and one training log."""
    adapter = root / "adapters" / "s" / "dpo" / "a-b" / "seed0" / "stage1"
    adapter.mkdir(parents=True)
    save_file({"lora_A": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7}, adapter / "adapter_model.safetensors")
    scores = root / "scores" / "s" / "dpo" / "a-b" / "seed0"
    scores.mkdir(parents=True)
    pd.DataFrame({"pair_id": ["p1", "p2"], "margin": [0.25, -1.5]}).to_parquet(scores / "stage1.parquet")
    logs = root / "train_logs" / "s" / "dpo" / "a-b" / "seed0"
    logs.mkdir(parents=True)
    pd.DataFrame({"step": [1, 1], "metric": ["loss", "step_seconds"], "value": [0.69, 0.12]}).to_parquet(
        logs / "stage1.parquet"
    )
    return root


def test_a_copy_is_the_same_and_a_rerun_s_timings_are_ignored(tmp_path):
    old = study(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    log = new / "train_logs" / "s" / "dpo" / "a-b" / "seed0" / "stage1.parquet"
    pd.DataFrame({"step": [1, 1], "metric": ["loss", "step_seconds"], "value": [0.69, 0.31]}).to_parquet(log)
    result = same_results(old, new)
    assert result.returncode == 0, result.stdout
    assert "adapters/**/*.safetensors: 1 of 1 the same" in result.stdout


def test_one_changed_bit_of_an_adapter_is_found(tmp_path):
    old = study(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    path = new / "adapters" / "s" / "dpo" / "a-b" / "seed0" / "stage1" / "adapter_model.safetensors"
    tensors = load_file(path)
    bits = tensors["lora_A"].view(torch.int32)
    bits[0, 1] ^= 1  # the last bit of one float
    save_file(tensors, path)
    result = same_results(old, new)
    assert result.returncode == 1
    assert "differs: adapters/s/dpo/a-b/seed0/stage1/adapter_model.safetensors" in result.stdout


def test_a_changed_score_a_changed_loss_and_a_missing_file_are_found(tmp_path):
    old = study(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    scores = new / "scores" / "s" / "dpo" / "a-b" / "seed0" / "stage1.parquet"
    pd.DataFrame({"pair_id": ["p1", "p2"], "margin": [0.25, -1.5000001]}).to_parquet(scores)
    log = new / "train_logs" / "s" / "dpo" / "a-b" / "seed0" / "stage1.parquet"
    pd.DataFrame({"step": [1, 1], "metric": ["loss", "step_seconds"], "value": [0.68, 0.12]}).to_parquet(log)
    (old / "scores" / "s" / "dpo" / "a-b" / "seed0" / "stage2.parquet").write_bytes(scores.read_bytes())
    result = same_results(old, new)
    assert result.returncode == 1
    assert "differs: scores/s/dpo/a-b/seed0/stage1.parquet" in result.stdout
    assert "differs: train_logs/s/dpo/a-b/seed0/stage1.parquet" in result.stdout
    assert f"only in {old}: scores/s/dpo/a-b/seed0/stage2.parquet" in result.stdout
