"""config/paper.yaml: the paper grid plans in full (no hub access: a dry run reads no data), replaces
the lab config rather than merging into it, and the SLURM profile gives its GPU jobs GPUs."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
import yaml
from workflow_helpers import REPO, copy_workflow, gpu_rules, job_counts, planned_jobs, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("paper"), REPO / "config/config.yaml")
    shutil.copy(REPO / "config/paper.yaml", workdir / "config/paper.yaml")
    return workdir


def test_paper_config_plans_the_whole_grid(paper_dir):
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    result = snakemake(paper_dir, "-n", "-p", "--configfile", "config/paper.yaml")
    counts = job_counts(result)
    settings, seeds = paper["settings"], paper["seeds"]
    assert len(settings) == 4 and paper["methods"] == ["dpo", "spo", "mix", "alright", "maxright"]
    # per setting and seed: dpo and spo in both orders (2 x 2 runs), 3 joint runs; 2 stages each
    assert counts["prepare_data"] == 8  # only the paper's objectives: the lab config was replaced
    assert counts["train_stage"] == 4 * 2 * 2 * len(seeds) * 2
    assert counts["train_joint_stage"] == 4 * 3 * len(seeds) * 2
    assert counts["score_stage"] == counts["train_stage"] + counts["train_joint_stage"]
    assert "build_base_model" not in counts  # the base is loaded by id
    out = result.stdout
    assert "meta-llama/Llama-3.1-8B-Instruct" in out
    for setting in settings:
        assert f"results/data/{setting}/" in out
    assert "results/data/conflicting/" not in out
    # prepare_data reads each objective with its own options and its siblings' specs
    command = next(line for line in out.splitlines() if "-m seqpref.data " in line and "multi_attribute" in line)
    args = shlex.split(command.split("> ")[0])
    spec = json.loads(args[args.index("--spec") + 1])
    siblings = json.loads(args[args.index("--siblings") + 1])
    assert spec["source"] == "helpsteer2" and spec["train_size"] == 5000 and spec["eval_size"] == 500
    assert set(siblings) == {"helpfulness", "verbosity"} - {spec["attribute"]}
    assert args[args.index("--max-length") + 1] == "1024"
    # the stage options: r = 32 on every linear layer, beta 0.3, lr 5e-5, one epoch
    train = next(line for line in out.splitlines() if "-m seqpref.train " in line)
    options = json.loads(shlex.split(train)[shlex.split(train).index("--options") + 1])
    assert options["lora"]["r"] == 32 and options["lora"]["target_modules"] == "all-linear"
    assert (options["beta"], options["learning_rate"], options["epochs"]) == (0.3, 5e-5, 1)
    assert "-m seqpref.gpus -- " in train


def test_paper_config_slurm_dry_run_shows_gpu_memory_and_time(paper_dir):
    result = snakemake(paper_dir, "-n", "--configfile", "config/paper.yaml", "--workflow-profile", "profiles/slurm")
    blocks = {block.split(":")[0].strip(): block for block in result.stdout.split("rule ")[1:]}
    planned = planned_jobs(result)
    assert "train_stage" in planned
    for rule in planned & gpu_rules():
        block = blocks[rule]
        assert "gpu=1" in block and "slurm_partition=gpu" in block, rule
        assert "mem_mb=" in block and "runtime=" in block, rule
    assert "mem_mb=16000" in blocks["prepare_data"] and "gpu=1" not in blocks["prepare_data"]
