"""Running the workflow in a fresh copy, for the workflow tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = Path(__file__).parent / "configs" / "lab_small.yaml"  # the reduced lab


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
