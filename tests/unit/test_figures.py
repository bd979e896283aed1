"""The figure modules on small synthetic tables with exactly the columns of seqpref's Parquet files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from figure_runs import N_STAGES, SEEDS, SETTINGS, runs  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seqpref.figures import common, pair_scatter, training_curves, transfer_heatmap  # noqa: E402

SUMMARY_METRICS = ["reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"]
CHANGE_METRICS = ["reward_margin", "rel_accuracy", "ln_margin"]


def role(objective: str, order: str, stage: int) -> str:
    """base | trained | earlier | later, as seqpref.plan.role."""
    if stage == 0:
        return "base"
    position = order.split("-").index(objective) + 1
    return "trained" if position == stage else "earlier" if position < stage else "later"


def margin(setting: str, order: str, seed: int, objective: str, stage: int) -> float:
    """A deterministic reward margin: up when trained, down on conflicting later training, seed jitter."""
    names = order.split("-")
    value = 0.0
    for s in range(1, stage + 1):
        if names[s - 1] == objective:
            value += 2.0
        else:
            value += -1.5 if setting == "conflicting" else 0.6
    return value + (0.3 * seed if stage else 0.0)


def label(change: float, row_role: str):
    """The summary label of a change (None at stage 0)."""
    if row_role == "base":
        return None
    if row_role == "trained":
        return "trained"
    return "degradation" if change <= -0.25 else "positive_transfer" if change >= 0.25 else "stable"


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    """A SUMMARY table (seeds pooled): 2 settings × 2 orders × 2 objectives × stages 0..2."""
    rows = []
    for setting, order, seed in runs():
        if seed != SEEDS[0]:
            continue
        for objective in SETTINGS[setting]:
            values = [margin(setting, order, seed, objective, s) for s in range(N_STAGES + 1)]
            for stage, value in enumerate(values):
                row = {
                    "setting": setting,
                    "method": "dpo",
                    "order": order,
                    "n_seeds": len(SEEDS),
                    "stage": stage,
                    "trained_objective": None if stage == 0 else order.split("-")[stage - 1],
                    "objective": objective,
                    "role": role(objective, order, stage),
                    "n": 8,
                }
                metric_values = {
                    "reward_margin": value,
                    "dpo_margin": 0.1 * value,
                    "rel_accuracy": 0.0 if stage == 0 else 0.5 + 0.1 * np.sign(value),
                    "ln_margin": 0.2 + 0.01 * value,
                }
                for name in SUMMARY_METRICS:
                    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = (
                        metric_values[name],
                        metric_values[name] - 0.1,
                        metric_values[name] + 0.1,
                    )
                for name in CHANGE_METRICS:
                    change = np.nan if stage == 0 else metric_values[name] - rows[-1][name]
                    row[f"{name}_change"] = change
                    row[f"{name}_change_lo"], row[f"{name}_change_hi"] = change - 0.1, change + 0.1
                row["label_metric"] = "reward_margin"
                row["label"] = label(row["reward_margin_change"], row["role"])
                row["share_of_own_gain"] = row["reward_margin_change"] / 2.0 if row["role"] == "earlier" else np.nan
                rows.append(row)
    return pd.DataFrame(rows)


PAIR_COLUMNS = [
    "setting",
    "method",
    "order",
    "seed",
    "stage",
    "trained_objective",
    "objective",
    "pair_id",
    "logp_chosen",
    "logp_rejected",
    "ref_logp_chosen",
    "ref_logp_rejected",
    "n_tokens_chosen",
    "n_tokens_rejected",
    "truncated",
    "beta",
    "reward_margin",
    "dpo_margin",
    "ln_margin",
]


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    """A PAIR_SCORES table where the stage-1 objective has margin +1 after stage 1 and −1 after stage 2."""
    rows = []
    for setting, order, seed in runs():
        first = order.split("-")[0]
        for stage in range(N_STAGES + 1):
            for objective in SETTINGS[setting]:
                for p in range(5):
                    if stage == 0:
                        value = 0.0
                    elif objective == first:
                        value = 1.0 if stage == 1 else -1.0
                    else:
                        value = 0.5 * stage
                    rows.append(
                        {
                            "setting": setting,
                            "method": "dpo",
                            "order": order,
                            "seed": seed,
                            "stage": stage,
                            "trained_objective": None if stage == 0 else order.split("-")[stage - 1],
                            "objective": objective,
                            "pair_id": f"{objective}-{p}",
                            "logp_chosen": -10.0 + value,
                            "logp_rejected": -10.0,
                            "ref_logp_chosen": -10.0,
                            "ref_logp_rejected": -10.0,
                            "n_tokens_chosen": 5,
                            "n_tokens_rejected": 5,
                            "truncated": False,
                            "beta": 0.1,
                            "reward_margin": value,
                            "dpo_margin": 0.1 * value,
                            "ln_margin": value / 5,
                        }
                    )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    """A TRAINING table: stage 1 logs steps 1..5, stage 2 steps 1..3, of loss and rewards/margins."""
    rows = []
    for setting, order, seed in runs():
        for stage, last in ((1, 5), (2, 3)):
            for step in range(1, last + 1):
                for metric in ("loss", "rewards/margins"):
                    rows.append(
                        {
                            "setting": setting,
                            "method": "dpo",
                            "order": order,
                            "seed": seed,
                            "stage": stage,
                            "objective": order.split("-")[stage - 1],
                            "step": step,
                            "metric": metric,
                            "value": 0.69 - 0.05 * step if metric == "loss" else 0.1 * step + seed,
                        }
                    )
    return pd.DataFrame(rows)


def panels(fig: Figure) -> list:
    """The figure's panels: its axes without colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def panel(fig: Figure, title: str):
    """The panel with ``title``."""
    (found,) = [ax for ax in panels(fig) if ax.get_title() == title]
    return found


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test opened."""
    yield
    plt.close("all")


def test_heatmap_panels_and_cell_values(summary):
    fig = transfer_heatmap.draw(summary)
    assert isinstance(fig, Figure)
    assert len(panels(fig)) == 4
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    ax = panel(fig, "conflicting: comply → refuse")
    values = ax.images[0].get_array()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    stages = [int(t.get_text().split("\n")[0]) for t in ax.get_xticklabels()]
    assert rows == ["comply", "refuse"] and stages == [0, 1, 2]
    cell = summary[
        (summary["setting"] == "conflicting")
        & (summary["order"] == "comply-refuse")
        & (summary["objective"] == "comply")
        & (summary["stage"] == 2)
    ]
    assert len(cell) == 1  # seeds pooled
    expected = cell["reward_margin_change"].item()
    assert values[rows.index("comply"), stages.index(2)] == pytest.approx(expected)
    assert expected < 0
    assert np.ma.getmaskarray(values)[:, stages.index(0)].all()  # the change is undefined at the base
    texts = [t.get_text() for t in ax.texts]
    share = cell["share_of_own_gain"].item()  # the change as a share of its own-stage gain, under the value
    assert f"{expected:+.2f}▼\n{share:+.0%} of own" in texts and share == pytest.approx(expected / 2.0)
    assert sum("of own" in t for t in texts) == 1  # only the earlier objective's cell has an own gain
    assert "2 seeds pooled; CIs over pairs and seeds" in fig.get_suptitle()


def test_heatmap_colour_scale_is_symmetric_and_shared(summary):
    fig = transfer_heatmap.draw(summary, metric="reward_margin", annotate=False)
    norms = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panels(fig)}
    assert len(norms) == 1
    ((vmin, vmax),) = norms
    assert vmin == -vmax > -np.inf
    assert not any(ax.texts for ax in panels(fig))


def test_heatmap_rejects_unknown_metric_and_method(summary):
    with pytest.raises(ValueError, match="not_a_metric"):
        transfer_heatmap.draw(summary, metric="not_a_metric")
    with pytest.raises(ValueError, match="ipo"):
        transfer_heatmap.draw(summary, method="ipo")


def test_scatter_plots_stage_k_against_k_plus_1(pairs):
    fig = pair_scatter.draw(pairs)
    assert isinstance(fig, Figure)
    assert len(panels(fig)) == 4
    for ax in panels(fig):
        (points,) = ax.collections  # one objective per panel: the one trained at stage 1
        offsets = np.asarray(points.get_offsets())
        assert len(offsets) == 5 * len(SEEDS)
        np.testing.assert_array_equal(offsets, np.tile([1.0, -1.0], (len(offsets), 1)))
        assert "100%" in points.get_label()


def test_scatter_subsamples_deterministically(pairs):
    first = np.asarray(pair_scatter.draw(pairs, max_points=3).axes[0].collections[0].get_offsets())
    assert len(first) == 3
    chosen = pair_scatter.subsample(pd.DataFrame({"x": range(100)}), 7)
    again = pair_scatter.subsample(pd.DataFrame({"x": range(100)}), 7)
    assert chosen["x"].tolist() == again["x"].tolist() == sorted(chosen["x"].tolist())


def test_training_curves_continue_stage_2_after_stage_1(training):
    fig = training_curves.draw(training, metrics=("loss", "rewards/margins"))
    assert isinstance(fig, Figure)
    assert len(panels(fig)) == 2 * 2
    ax = panel(fig, "conflicting · loss")
    lines = {line.get_label(): line for line in ax.get_lines()}
    stage_1 = lines["comply → refuse · stage 1 (comply)"].get_xdata()
    stage_2 = lines["comply → refuse · stage 2 (refuse)"].get_xdata()
    assert list(stage_1) == [1, 2, 3, 4, 5]
    assert list(stage_2) == [6, 7, 8]
    boundaries = [line.get_xdata()[0] for line in ax.get_lines() if line.get_label() == "_boundary"]
    assert 5 < min(boundaries) < 6


def test_training_curves_skip_a_missing_metric(training):
    with pytest.warns(UserWarning, match="grad_norm"):
        fig = training_curves.draw(training, metrics=["loss", "grad_norm"])
    ax = panel(fig, "compatible · grad_norm")
    assert not ax.get_lines()
    assert any("not logged" in t.get_text() for t in ax.texts)


def test_unknown_option_names_the_key():
    with pytest.raises(TypeError, match="bogus") as error:
        common.check_options(transfer_heatmap.draw, {"metric": "reward_margin", "bogus": 1})
    assert "annotate" in str(error.value)


def test_cli_writes_png_and_pdf(summary, tmp_path):
    table = tmp_path / "summary.parquet"
    summary.to_parquet(table)
    png, pdf = tmp_path / "out" / "heatmap.png", tmp_path / "out" / "heatmap.pdf"
    command = [
        sys.executable,
        "-m",
        "seqpref.figures.transfer_heatmap",
        str(table),
        str(common.STYLE),
        str(png),
        str(pdf),
        "--options",
        '{"metric": "reward_margin"}',
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in png.parent.iterdir()) == ["heatmap.pdf", "heatmap.png"]  # no temp files left


def test_cli_unknown_option_fails_naming_it(tmp_path):
    command = [
        sys.executable,
        "-m",
        "seqpref.figures.pair_scatter",
        str(tmp_path / "missing.parquet"),
        str(common.STYLE),
        str(tmp_path / "a.png"),
        str(tmp_path / "a.pdf"),
        "--options",
        '{"max_point": 10}',
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "max_point" in result.stderr and "max_points" in result.stderr
    assert not (tmp_path / "a.png").exists()


def test_figure_code_lists_the_figure_modules_each_figure_imports():
    from seqpref.figures import sources

    names = {
        figure: sorted(Path(p).name for p in sources.figure_code(figure))
        for figure in ("margin_trajectory", "transfer_heatmap", "sham_control")
    }
    assert names["margin_trajectory"] == ["common.py", "margin_trajectory.py", "method_comparison.py"]
    assert names["transfer_heatmap"] == ["common.py", "transfer_heatmap.py"]
    assert names["sham_control"] == ["common.py", "sham_control.py"]
