"""The reduced lab through a real one-node SLURM cluster: every job but the local rules runs as a
SLURM job, submitted by Snakemake's executor plugin with a profile derived from the shipped one
(only the cluster-specific keys changed), and the pair scores equal a local run's.

Skipped, saying why, where SLURM is not installed or we are not root; `.ci/run` installs it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

import slurm_cluster
from workflow_helpers import REPO, SMALL, copy_workflow

pytestmark = [pytest.mark.workflow,
              pytest.mark.skipif(slurm_cluster.unavailable() is not None, reason=slurm_cluster.unavailable() or "")]

TARGET = "results/tables/pairs.parquet"
LOCAL_RULES = {"aggregate", "collect_training", "collect_diagnostics", "collect_movement", "data_report"}


def _one_setting(path):
    """The reduced lab with its conflicting setting only (18 jobs): the same base model and pairs as
    the reduced lab's run, whose pair scores of that setting are the local reference."""
    config = yaml.safe_load(SMALL.read_text())
    config["settings"] = {"conflicting": config["settings"]["conflicting"]}
    path.write_text(yaml.safe_dump(config))
    return path


def test_profile(shipped: dict) -> dict:
    """The shipped SLURM profile with only what this cluster needs changed: its partition, no
    account, no GPUs (the node has none; sbatch rejects --gpus), memory within the node, and job
    status from squeue (no accounting daemon)."""
    profile = yaml.safe_load(yaml.safe_dump(shipped))
    profile["default-resources"].update(slurm_partition="debug", mem_mb=1000)
    profile["default-resources"].pop("slurm_account")
    for resources in profile["set-resources"].values():
        resources["slurm_partition"] = "debug"
        resources["mem_mb"] = min(resources.get("mem_mb", 1000), 2000)
        if "gpu" in resources:
            resources["gpu"] = 0
            resources.pop("cpus_per_gpu", None)
    for rule in ("train_stage", "train_joint_stage", "score_stage", "base_logps"):  # the rules' own gpu=1
        profile["set-resources"].setdefault(rule, {}).update(gpu=0, slurm_partition="debug")
    profile.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 5,
                    "jobs": 6, "retries": 0, "latency-wait": 5})
    return profile


test_profile.__test__ = False  # a helper, not a test


def test_reduced_lab_under_slurm_equals_a_local_run(lab_run, tmp_path):
    config = _one_setting(tmp_path / "one_setting.yaml")
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    copy_workflow(cluster, config)
    shipped = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    (cluster / "profiles/slurm-test").mkdir()
    (cluster / "profiles/slurm-test/profile.yaml").write_text(yaml.safe_dump(test_profile(shipped)))
    with slurm_cluster.local_cluster(tmp_path / "slurm") as env:
        result = subprocess.run(
            ["timeout", "-k", "10", "400", sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm-test",
             TARGET], cwd=cluster, env={**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            capture_output=True, text=True)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    stats = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", out, re.S)
    planned = {line.split()[0]: int(line.split()[1]) for line in stats.group(1).splitlines()}
    remote = sum(n for rule, n in planned.items() if rule not in LOCAL_RULES)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert remote >= 15 and len(set(submitted)) == remote, (planned, len(submitted))
    local = pd.read_parquet(lab_run / TARGET)
    pairs_local = local[local.setting == "conflicting"].sort_values(["order", "stage", "objective", "pair_id"], ignore_index=True)
    pairs_slurm = pd.read_parquet(cluster / TARGET).sort_values(["order", "stage", "objective", "pair_id"], ignore_index=True)
    pd.testing.assert_frame_equal(pairs_slurm, pairs_local)
