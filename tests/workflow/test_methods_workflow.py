"""All five methods and two seeds on the lab's conflicting setting, run once with `snakemake --cores 2`:
the same stage columns for every method, seeds pooled, MAXRIGHT's f* from the DAG, the method
figures, and reruns that touch one method only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import copy_workflow, planned_jobs, snakemake

from seqpref import joint

SMALL = Path(__file__).parent / "configs" / "lab_small.yaml"
METHODS = ["dpo", "spo", "mix", "alright", "maxright"]

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    """The reduced lab's conflicting setting with every method and seeds 0 and 1, run to completion."""
    config = yaml.safe_load(SMALL.read_text())
    config["settings"] = {"conflicting": config["settings"]["conflicting"]}
    config["methods"], config["seeds"] = METHODS, [0, 1]
    for figure in ("pair_scatter", "flip_plot", "gradient_cosine", "adapter_movement", "quartile_bars"):
        config["figures"].pop(figure, None)
    path = tmp_path_factory.mktemp("config") / "methods.yaml"
    path.write_text(yaml.safe_dump(config))
    workdir = copy_workflow(tmp_path_factory.mktemp("methods"), path)
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture(scope="module")
def summary(methods_run):
    return pd.read_parquet(methods_run / "results/tables/summary.parquet")


def test_every_method_has_the_same_stage_columns_and_pools_both_seeds(summary):
    assert sorted(summary["method"].unique()) == sorted(METHODS)
    for method, rows in summary.groupby("method"):
        assert sorted(rows["stage"].unique()) == [0, 1, 2], method
        assert (rows["n_seeds"] == 2).all(), method
    orders = summary.groupby("method")["order"].unique()
    for method in ("mix", "alright", "maxright"):
        assert list(orders[method]) == ["comply-refuse"]  # joint: the config order only
        assert set(summary.loc[(summary["method"] == method) & (summary["stage"] > 0), "role"]) == {"joint"}
    assert sorted(orders["dpo"]) == ["comply-refuse", "refuse-comply"]


def test_joint_stages_take_the_sequential_budget(methods_run):
    training = pd.read_parquet(methods_run / "results/tables/training.parquet")
    last = training.groupby(["method", "order", "seed", "stage"])["step"].max()
    assert last.nunique() == 1  # 256 train pairs / 16 per batch = 16 steps, every method and stage
    assert last.iloc[0] == 16


def test_maxright_f_star_is_the_single_objective_runs_eval_loss(methods_run):
    results = methods_run / "results"
    for seed in (0, 1):
        record = json.loads((results / f"adapters/conflicting/maxright/comply-refuse/seed{seed}/stage1/training_options.json").read_text())
        optimum = record["joint"]["optimum"]
        for objective, order in (("comply", "comply-refuse"), ("refuse", "refuse-comply")):
            scores = pd.read_parquet(results / f"scores/conflicting/dpo/{order}/seed{seed}/stage1.parquet")
            assert optimum[objective] == pytest.approx(joint.dpo_eval_loss(scores, objective, beta=0.1), abs=1e-12)


def test_joint_methods_keep_the_first_objective_better_than_sequential_dpo(methods_run):
    """In the conflicting setting sequential DPO gives back the first objective at stage 2; the joint
    methods, which train both objectives at both stages, lose far less of it."""
    transfer = pd.read_parquet(methods_run / "results/tables/transfer.parquet")
    rows = transfer[transfer["metric"] == "reward_margin"].set_index(["method", "order", "objective"])
    dpo = rows.loc[("dpo", "comply-refuse", "comply")]
    assert dpo["bwt_hi"] < -0.2  # the first objective degrades under sequential DPO
    for method in ("mix", "alright", "maxright"):
        first = rows.loc[(method, "comply-refuse", "comply")]
        assert abs(first["bwt"]) < abs(dpo["bwt"]) / 2, method
        assert np.isfinite(first["final_lo"]) and first["final_lo"] <= first["final"] <= first["final_hi"]


def test_method_figures_are_in_the_report(methods_run):
    figures = methods_run / "results/figures"
    for name in ("method_comparison", "margin_trajectory"):
        assert (figures / f"{name}.png").stat().st_size > 10_000
    snakemake(methods_run, "--report", "report.html")
    html = (methods_run / "report.html").read_text(errors="ignore")
    assert "method_comparison.png" in html and "preference-space analogue" in html


def test_changing_maxright_options_retrains_maxright_only(methods_run, tmp_path):
    config = yaml.safe_load((methods_run / "config/config.yaml").read_text())
    config["method_options"] = {"maxright": {"eval_every": 3}}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(methods_run, "-n", "--configfile", str(changed))
    assert "train_joint_stage" in planned_jobs(result) and "train_stage" not in planned_jobs(result)
    planned = [line for line in result.stdout.splitlines() if "output: results/adapters/" in line]
    assert planned and all("/maxright/" in line for line in planned)
