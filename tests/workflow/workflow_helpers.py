"""Running the workflow in a fresh copy, for the workflow tests."""

from __future__ import annotations

import functools
import json
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
    return pairs[pairs.setting == "conflicting"].sort_values(
        ["order", "stage", "objective", "pair_id"], ignore_index=True
    )


def copy_workflow(target: Path, config: Path) -> Path:
    """A fresh working copy: Snakefile, environment.yml, workflow/, profiles/ and ``config`` as config/config.yaml."""
    shutil.copy(REPO / "Snakefile", target / "Snakefile")
    shutil.copy(REPO / "environment.yml", target / "environment.yml")  # every rule's conda: names it
    shutil.copytree(REPO / "workflow", target / "workflow")
    shutil.copytree(REPO / "profiles", target / "profiles")
    (target / "config").mkdir()
    shutil.copy(config, target / "config" / "config.yaml")
    return target


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake ARGS`` in ``workdir`` (``env`` added to this process's environment); on
    an unexpected exit, fail with its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
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


#: every rule as Snakemake parses the lab's workflow (every rule is defined whatever the config plans)
_PARSE_RULES = """
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                            config_settings=ConfigSettings(configfiles=[Path("config/config.yaml")]),
                            snakefile=Path("Snakefile"), workdir=Path("."))._workflow
    def constant(resource):  # a resource computed per job (a function of wildcards) has no value here
        try:
            return resource.value
        except ValueError:
            return "per job"
    rules = {rule.name: {"resources": {name: constant(value) for name, value in dict(rule.resources).items()
                                       if not name.startswith("_")},
                         "shell": rule.shellcmd, "local": rule.name in workflow._localrules or rule.norun}
             for rule in workflow.rules}
print("RULES" + json.dumps(rules, default=str))
"""


@functools.cache
def parsed_rules() -> dict[str, dict]:
    """Rule name -> ``{"resources": declared resources, "shell": shell command (None without one),
    "local": whether it runs on the submitting host}`` of every rule of the workflow, as Snakemake
    parses it (a resource computed per job reads "per job")."""
    result = subprocess.run([sys.executable, "-c", _PARSE_RULES], cwd=REPO, capture_output=True, text=True, timeout=300)
    found = [line[5:] for line in result.stdout.splitlines() if line.startswith("RULES")]
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(found[-1])


def gpu_rules() -> set[str]:
    """The rules whose steps ask for a GPU (resources gpu=1)."""
    return {name for name, rule in parsed_rules().items() if str(rule["resources"].get("gpu")) == "1"}
