"""Running the workflow in a fresh copy, for the workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SMALL = Path(__file__).parent / "configs" / "lab_small.yaml"  # the reduced lab


def conflicting_only(path: Path, checkpoint_every: int = 0) -> Path:
    """The reduced lab with its conflicting setting only (about 20 jobs), written to ``path``: the
    same base model and pairs as the reduced lab's run, whose pair scores of that setting are the
    reference. ``checkpoint_every`` is a job resource: it leaves the scores as they are."""
    config = yaml.safe_load(SMALL.read_text())
    config["settings"] = {"conflicting": config["settings"]["conflicting"]}
    config["train"]["checkpoint_every"] = checkpoint_every
    config["controls"] = {"sham": False}  # the shams add jobs that these tests do not look at
    path.write_text(yaml.safe_dump(config))
    return path


def conflicting_pairs(workdir: Path):
    """The conflicting setting's pair scores of a run in ``workdir``, in a fixed row order."""
    import pandas as pd

    pairs = pd.read_parquet(workdir / "results/tables/pairs.parquet")
    return pairs[pairs.setting == "conflicting"].sort_values(["order", "stage", "objective", "pair_id"], ignore_index=True)


def copy_workflow(target: Path, config: Path) -> Path:
    """A fresh working copy: Snakefile, workflow/, profiles/ and ``config`` as config/config.yaml."""
    shutil.copy(REPO / "Snakefile", target / "Snakefile")
    shutil.copytree(REPO / "workflow", target / "workflow")
    shutil.copytree(REPO / "profiles", target / "profiles")
    (target / "config").mkdir()
    shutil.copy(config, target / "config" / "config.yaml")
    return target


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake ARGS`` in ``workdir``; on an unexpected exit, fail with its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def job_counts(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name -> job count from the 'Job stats' table of a dry run."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def planned_jobs(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names in the 'Job stats' table of a dry run."""
    return set(job_counts(result))
