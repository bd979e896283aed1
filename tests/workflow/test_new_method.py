"""Adding a method is its module and one registry line: in a copy of the repository, a new sequential
method (DPO under another name, with an option of its own) is registered, and a reduced study that runs
it and not ``dpo`` plans and runs to its figures. The config check builds the method's options block
from its dataclass and rejects a figure that names a method the study does not run."""

from __future__ import annotations

import json
import shutil
from itertools import permutations
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO, SMALL, snakemake

pytestmark = pytest.mark.workflow

NEW = "twin"

MODULE = '''"""twin: sequential DPO under another name (a method added in a test)."""

from dataclasses import dataclass, field

from seqpref.methods.base import SEQUENTIAL, Method


@dataclass
class TwinOptions:
    """``method_options.twin``."""

    tag: str = field(default="plain", metadata={"help": "a label recorded with the stage."})


METHOD = Method(name="twin", kind=SEQUENTIAL, options=TwinOptions, colour="#123456", summary="sequential DPO, again")
'''


def reduced_study() -> dict:
    """The reduced lab's conflicting setting, shrunk to a few optimiser steps, running ``twin`` alone:
    no figure names a method, so each draws its default."""
    config = yaml.safe_load(SMALL.read_text())
    config["settings"] = {"conflicting": config["settings"]["conflicting"]}
    for objective in config["settings"]["conflicting"]["objectives"].values():
        objective.update(train_size=48, eval_size=24)
    config["lab"]["model"].update(corpus_size=400, steps=20)
    config["methods"] = [NEW]
    config["controls"] = {"sham": False}
    config["labels"]["n_boot"] = 100
    config["figures"] = {
        name: {k: v for k, v in options.items() if k != "method"} for name, options in config["figures"].items()
    }
    return config


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """A copy of the repository with ``twin`` added: its module, and its line in the registry."""
    root = tmp_path_factory.mktemp("new_method")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("src", "workflow", "profiles"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    shutil.copy(REPO / "environment.yml", root / "environment.yml")
    methods = root / "src/seqpref/methods"
    (methods / f"{NEW}.py").write_text(MODULE)
    registry = (methods / "__init__.py").read_text()
    assert registry.count('    "dpo",\n') == 1
    (methods / "__init__.py").write_text(registry.replace('    "dpo",\n', f'    "dpo",\n    "{NEW}",\n'))
    (root / "config").mkdir()
    (root / "config/config.yaml").write_text(yaml.safe_dump(reduced_study()))
    return root


def run(root: Path, *args: str, check: bool = True):
    """snakemake in the copy, importing the copy's package."""
    return snakemake(root, *args, check=check, env={"PYTHONPATH": str(root / "src")})


def test_a_figure_naming_a_method_the_study_does_not_run_fails_the_plan(repository, tmp_path):
    config = reduced_study()
    config["figures"]["quartile_bars"]["method"] = "dpo"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run(repository, "-n", "--configfile", str(path), check=False)
    assert result.returncode != 0
    assert (
        f"figures.quartile_bars.method = 'dpo': not a method of this study; expected one of {NEW}"
        in result.stdout + result.stderr
    )


def test_a_new_method_plans_and_runs_a_study_without_dpo(repository):
    run(repository, "-n")
    run(repository, "--cores", "2")
    results = repository / "results"
    objectives = list(reduced_study()["settings"]["conflicting"]["objectives"])
    orders = ["-".join(order) for order in permutations(objectives)]  # a sequential method runs every order
    for order in orders:
        for stage in range(1, len(objectives) + 1):
            assert (results / f"adapters/conflicting/{NEW}/{order}/seed0/stage{stage}/training_options.json").is_file()
    summary = pd.read_parquet(results / "tables/summary.parquet")
    assert set(summary["method"]) == {NEW}
    assert set(summary["order"]) == set(orders)
    record = json.loads(
        (results / f"adapters/conflicting/{NEW}/{orders[0]}/seed0/stage2/training_options.json").read_text()
    )
    assert record["options"]["method_options"] == {"tag": "plain"}  # the default the schema took from the dataclass
    for figure in ("transfer_heatmap", "training_curves", "quartile_bars", "gradient_cosine", "method_comparison"):
        assert (results / f"figures/{figure}.png").stat().st_size > 0, figure
