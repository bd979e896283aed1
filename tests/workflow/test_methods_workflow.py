"""Every registered method and two seeds on the lab's partial-conflict setting (a shared attribute, a
conflicting one), run once with `snakemake --cores 2`: the same stage columns for every method, seeds
pooled, MAXRIGHT's f* and the merged adapters from the DAG, the joint methods ending positive on both
objectives where sequential DPO degrades the first, the replay budget, the merge front and the Pareto
table, the method figures, and reruns that touch one method only."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO, copy_workflow, planned_jobs, snakemake

from seqpref import methods, metrics, plan, stats

sys.path.insert(0, str(REPO / "benchmarks"))
import lab_baselines  # noqa: E402

METHODS = methods.names()
SEQUENTIAL, JOINT = methods.names(methods.SEQUENTIAL), methods.names(methods.JOINT)
LAMBDAS, SETTING = lab_baselines.LAMBDAS, lab_baselines.SETTING
FIRST, SECOND = "warm_comply", "warm_refuse"
ORDER, REVERSED = f"{FIRST}-{SECOND}", f"{SECOND}-{FIRST}"

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    """The baselines study of ``benchmarks/lab_baselines.py`` (the lab's partial-conflict setting on the
    reduced lab's options, every method, seeds 0 and 1), run to completion."""
    config = lab_baselines.config()
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
    for method in JOINT:
        assert list(orders[method]) == [ORDER]  # joint: the config order only
        assert set(summary.loc[(summary["method"] == method) & (summary["stage"] > 0), "role"]) == {"joint"}
    assert list(orders["merge"]) == [ORDER]  # post hoc: the config order, sequential roles
    merged = summary[(summary["method"] == "merge") & (summary["stage"] == 2)].set_index("objective")["role"]
    assert merged.to_dict() == {FIRST: "earlier", SECOND: "trained"}
    for method in SEQUENTIAL:
        assert sorted(orders[method]) == sorted([ORDER, REVERSED])


def test_joint_and_replay_stages_take_the_sequential_budget(methods_run):
    training = pd.read_parquet(methods_run / "results/tables/training.parquet")
    last = training.groupby(["method", "order", "seed", "stage"])["step"].max()
    assert last.nunique() == 1  # 256 train pairs / 16 per batch = 16 steps, every method and stage
    assert last.iloc[0] == 16
    assert set(training["method"]) == {m for m in METHODS if plan.trains(m)}  # merging trains nothing


def test_merge_stages_and_front_are_the_single_objective_adapters(methods_run):
    """Merge stage 1 is the first objective's single-objective adapter (weight 1): its pair scores
    equal dpo stage 1 of the order starting with it; front λ=1 and λ=0 are each adapter alone (the
    other weighted 0), and λ=0.5 is merge stage 2."""
    scores = methods_run / "results/scores"

    def margins(path):
        return pd.read_parquet(path).set_index(["objective", "pair_id"])["reward_margin"].sort_index()

    for seed in (0, 1):
        merge_dir, dpo = scores / f"{SETTING}/merge/{ORDER}/seed{seed}", scores / f"{SETTING}/dpo"
        first, second = (
            margins(dpo / f"{ORDER}/seed{seed}/stage1.parquet"),
            margins(dpo / f"{REVERSED}/seed{seed}/stage1.parquet"),
        )
        pd.testing.assert_series_equal(margins(merge_dir / "stage1.parquet"), first, atol=1e-4, rtol=0)
        pd.testing.assert_series_equal(
            margins(merge_dir / f"front{LAMBDAS.index(1.0)}.parquet"), first, atol=1e-4, rtol=0
        )
        pd.testing.assert_series_equal(
            margins(merge_dir / f"front{LAMBDAS.index(0.0)}.parquet"), second, atol=1e-4, rtol=0
        )
        pd.testing.assert_series_equal(
            margins(merge_dir / f"front{LAMBDAS.index(0.5)}.parquet"),
            margins(merge_dir / "stage2.parquet"),
            atol=1e-5,
            rtol=0,
        )


def test_pareto_table_has_every_run_and_the_front(methods_run):
    results = methods_run / "results"
    points = pd.read_parquet(results / "tables/pareto.parquet")
    finals = points[points["point"] == "final"]
    assert len(finals) == 2 * len(SEQUENTIAL) + len(METHODS) - len(SEQUENTIAL)  # sequential: both orders; others: one
    front = points[points["method"] == "merge"].dropna(subset=["lam"]).sort_values("lam")
    assert front["lam"].tolist() == LAMBDAS
    print(
        points[
            [
                "method",
                "order",
                "point",
                "x",
                "x_lo",
                "x_hi",
                "y",
                "y_lo",
                "y_hi",
                "dominated",
                "dominated_by_means",
                "pairs_seen_total",
                "tokens_total",
                "optimizer_steps_total",
            ]
        ]
        .round(2)
        .to_string()
    )
    volumes = pd.read_parquet(results / "tables/hypervolume.parquet")
    print(
        volumes[
            [
                "method",
                "n_points",
                "n_nondominated",
                "hypervolume",
                "hypervolume_lo",
                "hypervolume_hi",
                "best_point_hypervolume",
                "best_point_hypervolume_lo",
                "best_point_hypervolume_hi",
            ]
        ]
        .round(3)
        .to_string()
    )
    # every trained run's final point carries its budget; mix takes a batch of each objective per step
    trained = finals[finals["method"] != "merge"]
    assert trained["optimizer_steps_total"].notna().all() and trained["optimizer_steps_total"].nunique() == 1
    pairs = trained.groupby("method")["pairs_seen_total"].first()
    # joint steps draw full batches; a sequential stage's last batch holds what is left of its pairs
    assert pairs["mix"] == 2 * pairs["alright"] and pairs["maxright"] == pairs["alright"] >= pairs["dpo"]
    assert pairs["dpo"] == pairs["spo"] and pairs["dpo"] > 0.95 * pairs["alright"]
    assert (volumes["hypervolume_lo"] <= volumes["hypervolume"]).all() and (
        volumes["hypervolume"] <= volumes["hypervolume_hi"]
    ).all()
    assert set(volumes["method"]) == set(METHODS)
    assert (~points["dominated"]).any()
    assert (results / "figures/pareto_front.png").stat().st_size > 10_000


def test_maxright_f_star_is_the_single_objective_runs_eval_loss(methods_run):
    results = methods_run / "results"
    for seed in (0, 1):
        record = json.loads(
            (results / f"adapters/{SETTING}/maxright/{ORDER}/seed{seed}/stage1/training_options.json").read_text()
        )
        optimum = record["joint"]["optimum"]
        for objective, order in ((FIRST, ORDER), (SECOND, REVERSED)):
            scores = pd.read_parquet(results / f"scores/{SETTING}/dpo/{order}/seed{seed}/stage1.parquet")
            assert optimum[objective] == pytest.approx(metrics.dpo_eval_loss(scores, objective), abs=1e-12)


def test_joint_methods_end_positive_on_both_objectives_where_sequential_dpo_degrades_the_first(methods_run):
    """A model positive on both objectives exists here (prefer warm, ignore the opener). Every joint
    method ends with both margins above 0 in every seed (its pairs-only CI), while sequential DPO's
    second stage takes back part of the first objective (its change from stage 1 to 2 has a CI below 0
    in every seed)."""
    transfer = pd.read_parquet(methods_run / "results/tables/transfer.parquet")
    rows = transfer[transfer["metric"] == "reward_margin"].set_index(["method", "order", "objective"])
    print("final reward margins (nats) [95% CI]:")
    for (method, order, objective), row in rows.sort_index().iterrows():
        print(
            f"  {method:9s} {order:24s} {objective:12s} {row['final']:+.2f} [{row['final_lo']:+.2f}, {row['final_hi']:+.2f}]"
            f"  bwt {row['bwt']:+.2f} [{row['bwt_lo']:+.2f}, {row['bwt_hi']:+.2f}]"
        )
    # the first objective degrades in every seed (each seed's pairs-only interval below 0); pooled over only
    # two seeds, the interval (t with 1 df over the seed means) is too wide to say so, honestly
    pairs = pd.read_parquet(methods_run / "results/tables/pairs.parquet")
    for order, first in ((ORDER, FIRST), (REVERSED, SECOND)):
        for seed, run in pairs[(pairs.method == "dpo") & (pairs.order == order) & (pairs.objective == first)].groupby(
            "seed"
        ):
            wide = run.pivot(index="pair_id", columns="stage", values="reward_margin")
            assert stats.crossed_interval((wide[2] - wide[1]).to_numpy())["hi"] < 0, (order, seed)
        assert rows.loc[("dpo", order, first), "interval_covers"] == "pairs and seeds (2 seeds)"
    last = pairs["stage"].max()
    for method in JOINT:
        for objective in (FIRST, SECOND):
            final = pairs[(pairs.method == method) & (pairs.objective == objective) & (pairs.stage == last)]
            for seed, run in final.groupby("seed"):
                assert stats.crossed_interval(run["reward_margin"].to_numpy())["lo"] > 0, (method, objective, seed)


def test_method_figures_are_in_the_report(methods_run):
    figures = methods_run / "results/figures"
    for name in ("method_comparison", "margin_trajectory", "pareto_front"):
        assert (figures / f"{name}.png").stat().st_size > 10_000
    snakemake(methods_run, "--report", "report.html")
    html = (methods_run / "report.html").read_text(errors="ignore")
    assert "method_comparison.png" in html and "preference-space analogue" in html


def test_changing_maxright_options_retrains_maxright_only(methods_run, tmp_path):
    """A method's options are part of what its adapters were trained with: the retrain guard names
    the change, and with the opt-in only that method's stages are planned."""
    config = yaml.safe_load((methods_run / "config/config.yaml").read_text())
    config["method_options"] = {"maxright": {"eval_every": 3}, "merge": {"lambdas": LAMBDAS}}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    refused = snakemake(methods_run, "-n", "--configfile", str(changed), check=False)
    assert refused.returncode != 0 and "method_options.eval_every: 10 -> 3" in refused.stderr + refused.stdout
    assert "/maxright/" in refused.stderr + refused.stdout and "/mix/" not in refused.stderr + refused.stdout
    result = snakemake(methods_run, "-n", "--configfile", str(changed), "--config", "allow_retrain=True")
    assert "train_joint_stage" in planned_jobs(result) and "train_stage" not in planned_jobs(result)
    planned = [line for line in result.stdout.splitlines() if "output: results/adapters/" in line]
    assert planned and all("/maxright/" in line for line in planned)
