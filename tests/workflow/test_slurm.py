"""The reduced lab through a real one-node SLURM cluster: every job but the local rules runs as a
SLURM job, submitted by Snakemake's executor plugin with a profile derived from the shipped one
(only the cluster-specific keys changed), and the pair scores equal a local run's. A running stage
is sent SLURM's warning signal (what ``--signal=TERM@300`` sends before the time limit): it saves a
checkpoint and fails, and the profile's retry resumes it from that checkpoint.

Skipped, saying why, where SLURM is not installed or we are not root; `.ci/run` installs it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import slurm_cluster
import yaml
from workflow_helpers import REPO, conflicting_only, conflicting_pairs, copy_workflow, gpu_rules, parsed_rules

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(slurm_cluster.unavailable() is not None, reason=slurm_cluster.unavailable() or ""),
]

TARGET = "results/tables/pairs.parquet"


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
        resources.pop("cpus_per_gpu", None)
    for rule in gpu_rules():  # the rules' own gpu=1
        profile["set-resources"].setdefault(rule, {}).update(gpu=0, slurm_partition="debug")
    profile.update(
        {"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 5, "jobs": 6, "latency-wait": 5}
    )
    return profile


test_profile.__test__ = False  # a helper, not a test


def test_reduced_lab_under_slurm_equals_a_local_run(lab_run, tmp_path):
    config = conflicting_only(tmp_path / "one_setting.yaml", checkpoint_every=2)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    copy_workflow(cluster, config)
    shipped = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    (cluster / "profiles/slurm-test").mkdir()
    (cluster / "profiles/slurm-test/profile.yaml").write_text(yaml.safe_dump(test_profile(shipped)))
    with slurm_cluster.local_cluster(tmp_path / "slurm") as env:
        run = subprocess.Popen(
            [
                "timeout",
                "-k",
                "10",
                "400",
                sys.executable,
                "-m",
                "snakemake",
                "--workflow-profile",
                "profiles/slurm-test",
                TARGET,
            ],
            cwd=cluster,
            env={**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        signalled = _warn_a_training_stage(run, cluster / "results/checkpoints", env)
        out = run.communicate()[0]
    assert run.returncode == 0, out[-4000:]
    assert signalled, "no training stage was seen running with a checkpoint"
    for job in signalled:  # the warned job failed (its stage saved a checkpoint and stopped) ...
        first_attempt = next((cluster / "results/logs/slurm").rglob(f"{job}.log")).read_text()
        assert "Error in rule train_stage" in first_attempt, first_attempt[-3000:]
    # ... and the retry resumed from the checkpoint saved at the signal, not an earlier periodic one
    # (the stage log is the retry's)
    resumed = [
        line
        for log in (cluster / "results/logs/train_stage").rglob("*.log")
        for line in log.read_text().splitlines()
        if "resuming from" in line
    ]
    assert len(resumed) == len(signalled), (signalled, resumed)
    assert all(line.endswith("(saved on signal)") for line in resumed), resumed
    assert not list((cluster / "results/checkpoints").rglob("checkpoint-*")), "checkpoints left after success"
    stats = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", out, re.S)
    planned = {line.split()[0]: int(line.split()[1]) for line in stats.group(1).splitlines()}
    remote = sum(n for rule, n in planned.items() if not parsed_rules()[rule]["local"])
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert remote >= 15 and len(set(submitted)) == remote + len(signalled), (planned, len(submitted), signalled)
    pd.testing.assert_frame_equal(conflicting_pairs(cluster), conflicting_pairs(lab_run))


def _warn_a_training_stage(run: subprocess.Popen, checkpoints, env) -> list[str]:
    """Once training stages have written a checkpoint, send SIGTERM to the steps of every running
    train_stage job whose own stage has one, as ``--signal=TERM@300`` would; returns their SLURM job ids.
    (A job signalled while it still imports torch dies before its handler is installed and rightly
    starts afresh: that is not the case under test.)"""
    while run.poll() is None:
        saved = {
            "_".join([setting, method, order, seed.removeprefix("seed"), stage.removeprefix("stage")])
            for setting, method, order, seed, stage in (
                p.parent.parent.relative_to(checkpoints).parts
                for p in checkpoints.rglob("checkpoint-*/seqpref_state.json")
            )
        }
        if saved:
            jobs = subprocess.run(
                ["squeue", "-h", "-t", "R", "-o", "%i %k"], env=env, capture_output=True, text=True
            ).stdout
            ids = [
                job
                for job, comment in (line.split(maxsplit=1) for line in jobs.splitlines() if " " in line)
                if comment.startswith("rule_train_stage_wildcards_")
                and comment.removeprefix("rule_train_stage_wildcards_").strip() in saved
            ]
            for job in ids:
                subprocess.run(["scancel", "--signal=TERM", job], env=env, check=True)
            if ids:
                return ids
        time.sleep(0.2)
    return []
