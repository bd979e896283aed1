"""The shipped SLURM profile covers every rule that asks for a GPU, read from Snakemake itself: adding
such a rule without its profile entry fails here (without a cluster; tests/workflow/test_slurm.py runs one)."""

from __future__ import annotations

import json
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
print("RULES" + json.dumps(rules, default=str))
"""


@pytest.fixture(scope="module")
def rules() -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-c", RULE_RESOURCES], cwd=REPO, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RULES")), None)
    assert line, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(line[len("RULES"):])


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
