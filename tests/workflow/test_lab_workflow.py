"""The whole DAG on the reduced lab, run once with `snakemake --cores 2`, then checked end to end:
the science (labels match the lab's construction), the outputs, the report, reruns and profiles."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from workflow_helpers import REPO, gpu_rules, snakemake
from workflow_helpers import copy_workflow as _copy_workflow
from workflow_helpers import planned_jobs as _planned_jobs

from seqpref import tables

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def summary(lab_run):
    return pd.read_parquet(lab_run / "results/tables/summary.parquet")


def _label(summary, setting, order, stage, objective):
    row = summary[
        (summary.setting == setting)
        & (summary.order == order)
        & (summary.stage == stage)
        & (summary.objective == objective)
    ]
    assert len(row) == 1, (setting, order, stage, objective)
    return row.iloc[0]


@pytest.mark.parametrize("order", ["comply-refuse", "refuse-comply"])
def test_conflicting_first_objective_degrades_after_the_second_stage(summary, order):
    first, second = order.split("-")
    row = _label(summary, "conflicting", order, 2, first)
    assert row.role == "earlier"
    assert row.label == "degradation", row.to_dict()
    assert row.reward_margin_change_hi < 0


@pytest.mark.parametrize("order", ["comply-polite", "polite-comply"])
def test_compatible_training_one_objective_raises_the_other(summary, order):
    first, second = order.split("-")
    row = _label(summary, "compatible", order, 1, second)  # the not-yet-trained objective at stage 1
    assert row.role == "later"
    assert row.label == "positive_transfer", row.to_dict()


@pytest.mark.parametrize("order", ["comply-warm", "warm-comply"])
def test_independent_earlier_objective_keeps_what_it_learned(summary, order):
    """Independent attributes: the later stage takes nothing from the earlier objective. It moves it
    by a small share of its own gain, well under the conflicting setting's loss of (nearly) all of it,
    and within the label threshold: stable (the own gain of ~0.5 nats sets no more than min_effect)."""
    first, _ = order.split("-")
    row = _label(summary, "independent", order, 2, first)
    assert row.label == "stable", row.to_dict()
    assert row.label_criterion == "absolute" and -0.1 < row.share_of_own_gain < 0.5, row.to_dict()
    assert abs(row.reward_margin_change) < row.label_threshold
    trained = _label(summary, "independent", order, 1, first)
    assert trained.reward_margin > 0 and trained.reward_margin_lo > 0  # it was learned, and then kept
    conflicting = _label(summary, "conflicting", "comply-refuse", 2, "comply")
    assert conflicting.share_of_own_gain < -0.5


def test_every_trained_stage_learns_its_objective(summary):
    trained = summary[summary.role == "trained"]
    assert len(trained) == 3 * 2 * 2  # settings × orders × stages
    assert (trained.reward_margin_change_lo > 0).all(), trained[["setting", "order", "stage", "objective"]]


def test_stage0_is_the_base(summary):
    base = summary[summary.stage == 0]
    assert (base.reward_margin == 0).all() and (base.role == "base").all() and base.label.isna().all()


def test_pair_scores_have_the_design_columns_and_provenance(lab_run):
    path = lab_run / "results/tables/pairs.parquet"
    assert pq.read_schema(path).names == tables.PAIR_SCORES.names
    pairs = pd.read_parquet(path)
    # 3 settings × 2 orders × 3 stages (0, 1, 2) × 2 objectives, every eval pair each time
    assert pairs.groupby(["setting", "order", "stage", "objective"]).ngroups == 3 * 2 * 3 * 2
    assert pairs.reward_margin.notna().all() and (pairs.n_tokens_chosen > 0).all()
    record = tables.read_provenance(path)
    assert {"config_hash", "versions", "git_commit"} <= set(record)
    score_file = next((lab_run / "results/scores").rglob("stage2.parquet"))
    assert tables.read_provenance(score_file)["step"] == "score_stage"


def test_figures_and_data_reports_exist(lab_run):
    for name in ("transfer_heatmap", "pair_scatter", "training_curves"):
        for ext in ("png", "pdf"):
            assert (lab_run / f"results/figures/{name}.{ext}").stat().st_size > 1000
    report = yaml.safe_load((lab_run / "results/data/conflicting/comply/report.json").read_text())
    assert report["train_pairs"] > 0 and report["eval_pairs"] > 0


def test_adapters_are_protected(lab_run):
    weights = list((lab_run / "results/adapters").rglob("adapter_model.safetensors"))
    assert len(weights) == 12 + 6  # 6 runs × 2 stages, and each run's sham of stage 2
    assert all(not (w.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) for w in weights)


def test_verdicts_table_reads_the_construction(lab_run):
    frame = pd.read_csv(lab_run / "results/tables/verdicts.tsv", sep="\t")
    conflicting = frame[(frame.setting == "conflicting") & (frame.method == "dpo")]
    assert (
        len(conflicting) == 2 and (conflicting["label"] == "degradation").all() and (conflicting["change_hi"] < 0).all()
    )
    assert set(frame["interval_covers"]) == {"pairs (1 seed)"}  # the reduced lab runs one seed
    assert frame["control_label"].fillna("").ne("drift").all()


def test_report_has_every_figure_with_its_caption(lab_run):
    snakemake(lab_run, "--report", "report.html")
    html = (lab_run / "report.html").read_text()
    assert "verdicts.tsv" in html
    for name in ("transfer_heatmap.png", "pair_scatter.png", "training_curves.png"):
        assert name in html
    assert "What to look for" in html


def test_nothing_reruns_when_nothing_changed(lab_run):
    assert "Nothing to be done" in snakemake(lab_run, "-n").stdout


def test_changing_one_figure_option_reruns_only_that_figure(lab_run, tmp_path):
    config = yaml.safe_load((lab_run / "config/config.yaml").read_text())
    config["figures"]["pair_scatter"]["alpha"] = 0.9
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = _planned_jobs(snakemake(lab_run, "-n", "--configfile", str(changed)))
    assert jobs == {"plot_pair_scatter", "all"}


def test_a_new_default_never_deletes_finished_adapters(lab_run):
    """An adapter trained before an option existed (its training_options.json lacks the key) would be
    retrained by Snakemake for the new default's params change, deleting it, as root too: the guard
    stops the run and names the option. Simulated by removing a recorded key from one adapter."""
    record_path = lab_run / "results/adapters/conflicting/dpo/comply-refuse/seed0/stage1/training_options.json"
    original = record_path.read_text()
    record = json.loads(original)
    del record["options"]["max_grad_norm"]
    try:
        record_path.write_text(json.dumps(record))
        result = snakemake(lab_run, "-n", check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0 and "1 finished adapter(s)" in out
        assert "max_grad_norm: (absent) -> 1.0" in out and "did not exist when the adapter was trained" in out
    finally:
        record_path.write_text(original)
    assert "Nothing to be done" in snakemake(lab_run, "-n").stdout


@pytest.mark.parametrize(
    ("figure", "shared"),
    [
        ("margin_trajectory", {"common.py", "method_comparison.py"}),  # it imports the method colours
        ("quartile_bars", {"common.py"}),
    ],
)
def test_a_figure_rule_takes_the_figure_modules_it_imports_as_input(lab_run, figure, shared):
    """A figure's code inputs are its module and the figure modules it imports, so editing a shared
    one (Snakemake compares the inputs' content, not only their mtime) redraws exactly the figures
    that use it."""
    result = snakemake(lab_run, "-n", "-f", f"results/figures/{figure}.png")
    (inputs,) = [line.split("input:")[1] for line in result.stdout.splitlines() if "input:" in line]
    modules = {Path(p.strip()).name for p in inputs.split(",") if p.strip().endswith(".py")}
    assert modules == shared | {f"{figure}.py"}


def test_changing_a_training_option_never_deletes_finished_adapters(lab_run, tmp_path):
    """A changed learning rate stops the run before any job, as root too (protected() checks
    os.access, which root passes), naming the adapters and the option; nothing is lost. With the
    opt-in, the same change plans the retraining."""
    config = yaml.safe_load((lab_run / "config/config.yaml").read_text())
    config["train"]["learning_rate"] = 0.0005
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    adapters = sorted((lab_run / "results/adapters").rglob("adapter_model.safetensors"))
    before = {p: p.read_bytes() for p in adapters}
    result = snakemake(lab_run, "--cores", "1", "--configfile", str(changed), check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{len(adapters)} finished adapter(s) were trained with other options" in out
    assert "learning_rate: 0.001 -> 0.0005" in out
    assert "results/adapters/conflicting/dpo/comply-refuse/seed0/stage1" in out
    assert "allow_retrain: true" in out
    assert {
        p: p.read_bytes() for p in sorted((lab_run / "results/adapters").rglob("adapter_model.safetensors"))
    } == before
    opted_in = snakemake(lab_run, "-n", "--configfile", str(changed), "--config", "allow_retrain=True")
    assert "train_stage" in _planned_jobs(opted_in)
    assert "Nothing to be done" in snakemake(lab_run, "-n").stdout  # nothing was lost or retrained


@pytest.mark.skipif(
    os.getuid() != 0,
    reason="as another user protected() already refuses to rerun the stage; the "
    "case under test is root's, whom protected() does not stop",
)
def test_whatever_reruns_a_finished_stage_keeps_its_adapter_aside(lab_run, tmp_path):
    """A diagnostics option is a param of every training stage, which the options guard does not
    compare: changing it reruns the stage, and Snakemake deletes its adapter first, as root too. The
    run keeps the adapter it replaced (and only that one) under results/replaced/<time>/ and says so."""
    work = tmp_path / "lab"
    shutil.copytree(lab_run, work, symlinks=True)
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["diagnostics"]["every"] += 1
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    stage = "adapters/conflicting/dpo/comply-refuse/seed0/stage1"
    before = (work / "results" / stage / "adapter_model.safetensors").read_bytes()
    result = snakemake(work, "--cores", "1", f"results/{stage}/adapter_model.safetensors")
    assert "1 finished adapter(s) were deleted or retrained" in result.stderr, result.stderr[-3000:]
    (kept_run,) = (work / "results/replaced").iterdir()
    kept = sorted(p.parent.relative_to(kept_run) for p in kept_run.rglob("adapter_model.safetensors"))
    assert kept == [Path(stage)]
    assert (kept_run / stage / "adapter_model.safetensors").read_bytes() == before
    assert (kept_run / stage / "training_options.json").is_file()
    assert (work / "results" / stage / "adapter_model.safetensors").is_file()  # and the stage was retrained


def test_checkpoint_frequency_is_passed_to_stages_and_reruns_nothing(lab_run, tmp_path):
    """How often a stage checkpoints is how it runs, not what it trains: every train job gets it and
    its checkpoint folder, and changing it on a finished study plans no job."""
    config = yaml.safe_load((lab_run / "config/config.yaml").read_text())
    config["train"]["checkpoint_every"] = 3
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    assert "Nothing to be done" in snakemake(lab_run, "-n", "--configfile", str(changed)).stdout
    commands = [
        line
        for line in snakemake(lab_run, "-n", "-p", "-F", "--configfile", str(changed)).stdout.splitlines()
        if "-m seqpref.train " in line or "-m seqpref.joint " in line
    ]
    assert commands and all("--checkpoint-every 3" in line for line in commands)
    assert all("--checkpoint-dir results/checkpoints/" in line for line in commands)


def test_default_profile_is_read_by_a_plain_snakemake(tmp_path):
    """`snakemake --cores N` reads profiles/default beside the Snakefile (rerun-incomplete, keep-going
    off, ...): Snakemake only looks there, never in workflow/profiles/."""
    workdir = _copy_workflow(tmp_path, REPO / "config/config.yaml")
    result = snakemake(workdir, "-n", "--cores", "2")
    assert "Using workflow specific profile profiles/default" in result.stdout + result.stderr
    profile = yaml.safe_load((REPO / "profiles/default/profile.yaml").read_text())
    assert profile["rerun-incomplete"] is True


def test_slurm_profile_dry_run_requests_gpus(tmp_path):
    workdir = _copy_workflow(tmp_path, REPO / "config/config.yaml")
    result = snakemake(workdir, "-n", "--workflow-profile", "profiles/slurm")
    out = result.stdout
    blocks = {block.split(":")[0].strip(): block for block in out.split("rule ")[1:]}
    planned = _planned_jobs(result)
    assert "train_stage" in planned
    for rule in planned:
        asks = rule in gpu_rules()
        assert ("gpu=1" in blocks[rule]) == asks and ("slurm_partition=gpu" in blocks[rule]) == asks, rule


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"train": {"batchsize": 4}}, "train.batchsize: unknown key; expected one of"),
        ({"train": {"beta": -1}}, "train.beta = -1"),
        ({"methods": ["dop"]}, "methods.0 = 'dop': expected one of 'dpo'"),
    ],
)
def test_bad_config_fails_naming_the_key(tmp_path, patch, expected):
    workdir = _copy_workflow(tmp_path, REPO / "config/config.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(patch))
    result = snakemake(workdir, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_gradient_cosines_follow_the_construction(lab_run):
    """Stage 2's gradient against the earlier objective: opposed when they conflict, aligned when
    compatible, near-orthogonal when independent."""
    diagnostics = pd.read_parquet(lab_run / "results/tables/diagnostics.parquet")
    assert set(diagnostics["stage"]) == {2}
    assert set(diagnostics["kind"]) == {"cross", "floor_current", "floor_other"}
    cosine = diagnostics[diagnostics.kind == "cross"].groupby("setting")["cosine"].mean()
    assert cosine["conflicting"] < -0.5
    assert cosine["compatible"] > 0.5
    assert abs(cosine["independent"]) < 0.4
    # the independent setting is near-orthogonal against its noise floor: two batches of one
    # objective agree far more than the two objectives do
    floors = diagnostics[diagnostics.kind != "cross"].groupby("setting")["cosine"].min()
    assert floors["independent"] > abs(cosine["independent"]) + 0.3, (floors, cosine)
    assert (diagnostics.groupby(["setting", "order"])["step"].min() == 1).all()


def test_adapter_movement_follows_the_construction(lab_run):
    movement = pd.read_parquet(lab_run / "results/tables/movement.parquet")
    stage2 = movement[(movement.module == "all") & (movement.stage == 2)].groupby("setting")["cosine_previous"].mean()
    assert stage2["conflicting"] < -0.5  # the second stage undoes the first
    assert stage2["compatible"] > 0.3
    assert movement[movement.module != "all"]["module"].str.contains("layers.0.self_attn.q_proj").any()


def test_sham_stage_is_a_seeded_half_swap_scored_like_a_stage(lab_run):
    """Every sequential run's stage 2 has a sham, trained on its objective's pairs with exactly half of
    them swapped, at a learning rate scaled after a pilot so that it moves the adapter as far as the real
    stage (controls.sham_match_distance). The conflicting setting's degradation exceeds the sham's, and a
    conflict by construction is never read as drift."""
    results = lab_run / "results"
    real = pd.read_parquet(results / "data/conflicting/refuse/train.parquet").set_index("pair_id")
    sham = pd.read_parquet(results / "sham/conflicting/refuse/seed0/train.parquet").set_index("pair_id").loc[real.index]
    swapped = sham["chosen"] != real["chosen"]
    assert swapped.sum() == len(real) // 2 and (sham.loc[swapped, "chosen"] == real.loc[swapped, "rejected"]).all()
    recorded = json.loads(
        (results / "adapters/conflicting/dpo/comply-refuse/seed0/sham2/training_options.json").read_text()
    )
    assert recorded["distance_match"]["lr_scale"] > 1  # half-swapped labels cancel: the pilot fell short
    assert (
        recorded["options"]["learning_rate"]
        == yaml.safe_load((lab_run / "config/config.yaml").read_text())["train"]["learning_rate"]
    )  # the adapter records the configured rate: the retrain guard compares that
    controls = pd.read_parquet(results / "tables/controls.parquet")
    assert list(controls.columns) == tables.CONTROLS.names
    assert len(controls) == 3 * 2 and set(controls["role"]) == {"earlier"} and set(controls["stage"]) == {2}
    assert controls["change_norm_ratio"].between(0.8, 1.25).all(), controls["change_norm_ratio"].tolist()
    conflicting = controls[controls.setting == "conflicting"]
    assert conflicting["control_label"].isin(["specific_degradation", "control_invalid"]).all(), conflicting.to_dict(
        "records"
    )
    assert (conflicting["specific_hi"] < 0).all()
    invalid = controls[controls["control_label"] == "control_invalid"]
    assert invalid["control_invalid_reason"].str.len().gt(0).all()
    assert controls["change_norm_real"].gt(0).all() and controls["change_norm_sham"].gt(0).all()
    assert (results / "figures/sham_control.png").stat().st_size > 10_000


def test_a_previous_reference_sham_reads_the_earlier_stages_log_probs(lab_run, tmp_path):
    """controls.sham_design previous_reference plans one sham_reference job per sham (the stage k−1
    adapter's log-probs of the sham's pairs) and trains each sham against it instead of the base's."""
    config = yaml.safe_load((lab_run / "config/config.yaml").read_text())
    config["controls"] = {**config.get("controls", {}), "sham": True, "sham_design": "previous_reference"}
    (tmp_path / "previous.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(lab_run, "-n", "-p", "--configfile", str(tmp_path / "previous.yaml"))
    jobs = _planned_jobs(result)
    assert {"sham_reference", "train_sham_stage"} <= jobs and "train_stage" not in jobs
    lines = result.stdout.splitlines()
    reference = [ln for ln in lines if "-m seqpref.logps" in ln and "--adapter" in ln]
    assert reference and all("/stage1" in ln.split("--adapter")[1] for ln in reference)
    trained = [ln for ln in lines if "-m seqpref.train" in ln and "/sham2" in ln]
    assert trained and all("/reference2.parquet" in ln and "--match-distance" in ln for ln in trained)


def test_transfer_and_quartile_tables(lab_run):
    transfer = pd.read_parquet(lab_run / "results/tables/transfer.parquet")
    rows = transfer[(transfer.setting == "conflicting") & (transfer.metric == "reward_margin")]
    first = rows[rows.apply(lambda r: r.order.split("-")[0] == r.objective, axis=1)]
    assert len(first) == 2 and (first["bwt_hi"] < 0).all()
    quartiles = pd.read_parquet(lab_run / "results/tables/quartiles.parquet")
    assert set(quartiles["quartile"]) == {1, 2, 3, 4}
    assert set(quartiles["assignment"]) == {"own_margin"}  # one seed: no other seed to bin on
    assert quartiles.groupby(["setting", "order", "objective"])["n"].sum().gt(100).all()


def test_a_bad_dataset_fails_by_name_and_loses_nothing(lab_run, tmp_path):
    """A setting whose file lacks a column fails in prepare_data, naming file and column; with
    --keep-going the rest of the DAG is untouched, and dropping the setting leaves nothing to redo."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    config = yaml.safe_load((lab_run / "config/config.yaml").read_text())
    config["settings"]["broken"] = {
        "objectives": {
            "x": {"source": "file", "path": str(bad), "eval_size": 1},
            "y": {"source": "file", "path": str(bad), "eval_size": 1},
        }
    }
    changed = tmp_path / "broken.yaml"
    changed.write_text(yaml.safe_dump(config))
    summary = lab_run / "results/tables/summary.parquet"
    before = summary.stat().st_mtime_ns
    result = snakemake(lab_run, "--cores", "2", "--keep-going", "--configfile", str(changed), check=False)
    assert result.returncode != 0
    log = (lab_run / "results/logs/prepare_data/broken/x.log").read_text()
    assert str(bad) in log and "'rejected'" in log and "missing column" in log
    assert summary.stat().st_mtime_ns == before
    assert "Nothing to be done" in snakemake(lab_run, "-n").stdout
