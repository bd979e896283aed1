"""The shipped SLURM profile covers every rule that asks for a GPU, read from Snakemake itself: adding
such a rule without its profile entry fails here (without a cluster; tests/workflow/test_slurm.py runs one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from workflow_helpers import REPO

pytestmark = pytest.mark.workflow

#: the rules' resources as Snakemake parses them (every rule is defined whatever the config plans)
RULE_RESOURCES = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet=True)) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                            config_settings=ConfigSettings(configfiles=[Path("config/config.yaml")]),
                            snakefile=Path("Snakefile"), workdir=Path("."))
    def constant(resource):  # a resource computed per job (a function of wildcards) has no value here
        try:
            return resource.value
        except ValueError:
            return "per job"
    rules = {rule.name: {name: constant(value) for name, value in dict(rule.resources).items()}
             for rule in workflow._workflow.rules}
    shell = {rule.name: rule.shellcmd for rule in workflow._workflow.rules if rule.shellcmd}
print("RULES" + json.dumps(rules, default=str))
print("SHELL" + json.dumps(shell))
"""


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict]:
    """``{"RULES": name -> resources, "SHELL": name -> shell command}`` of every rule, as Snakemake parsed them."""
    result = subprocess.run([sys.executable, "-c", RULE_RESOURCES], cwd=REPO, capture_output=True, text=True, timeout=300)
    found = {ln[:5]: json.loads(ln[5:]) for ln in result.stdout.splitlines() if ln[:5] in ("RULES", "SHELL")}
    assert set(found) == {"RULES", "SHELL"}, result.stdout[-2000:] + result.stderr[-2000:]
    return found


@pytest.fixture(scope="module")
def rules(parsed) -> dict[str, dict]:
    return parsed["RULES"]


def test_only_steps_that_import_torch_go_through_a_warm_server(parsed):
    """The warm server exists to save torch's import: a step that does not import torch (tables,
    figures, data) starts as a plain ``python -m``; every step started through seqpref.warm or
    seqpref.gpus (which hands CPU jobs to seqpref.warm) imports torch when its module is imported."""
    through_server, plain = {}, {}
    for name, command in parsed["SHELL"].items():
        modules = re.findall(r"python -m ([\w.{}]+)", command)
        if modules[:1] in (["seqpref.warm"], ["seqpref.gpus"]):
            through_server[name] = modules[1]
        elif modules:
            plain[name] = modules[0]
    assert {"train_stage", "score_stage", "adapter_movement"} <= set(through_server)
    assert {"seqpref.aggregate", "seqpref.pareto", "seqpref.data"} <= set(plain.values()), plain
    # torch is in sys.modules once the module is imported, or the module imports it in a function
    check = ("import ast, importlib, json, sys; module = importlib.import_module(sys.argv[1]); "
             "tree = ast.parse(open(module.__file__).read()); "
             "local = any(n.module.split('.')[0] == 'torch' if isinstance(n, ast.ImportFrom) and n.module "
             "else any(a.name.split('.')[0] == 'torch' for a in n.names) "
             "for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))); "
             "print(json.dumps('torch' in sys.modules or local))")
    for name, module in sorted(through_server.items()):
        out = subprocess.run([sys.executable, "-c", check, module], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.splitlines()[-1]), f"rule {name} goes through the warm server but {module} does not import torch"


def test_every_gpu_rule_has_a_gpu_partition_memory_time_and_the_training_signal(rules):
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    gpu_rules = sorted(name for name, resources in rules.items() if str(resources.get("gpu")) == "1")
    assert {"train_stage", "train_joint_stage", "train_sham_stage", "score_stage", "base_logps"} <= set(gpu_rules)
    for name in gpu_rules:
        entry = profile["set-resources"].get(name)
        assert entry is not None, f"rule {name} asks for a GPU but profiles/slurm/profile.yaml has no entry for it"
        assert entry.get("slurm_partition") == "gpu" and entry.get("gpu") == 1, name
        assert entry.get("mem_mb", 0) >= 8000 and entry.get("runtime", 0) >= 60 and entry.get("cpus_per_gpu"), name
        if name.startswith("train_"):  # a training stage saves a checkpoint on SLURM's warning signal
            assert "--signal=TERM@300" in entry.get("slurm_extra", ""), name
    # and the profile names no rule that does not exist
    assert set(profile["set-resources"]) <= set(rules), set(profile["set-resources"]) - set(rules)
    header = (REPO / "profiles/slurm/profile.yaml").read_text().split("executor:")[0]
    assert all(name in header for name in gpu_rules), "the profile's header lists the GPU rules"
