"""The quartile, flip, gradient-cosine and adapter-movement figures on small synthetic tables with exactly
the columns of seqpref's Parquet files."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from figure_runs import N_STAGES, SEEDS, SETTINGS, orders, runs  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seqpref import tables  # noqa: E402
from seqpref.figures import adapter_movement, common, flip_plot, gradient_cosine, quartile_bars  # noqa: E402

N_PAIRS = 6


def sign_of_setting(setting: str) -> float:
    """−1 for the conflicting setting (later training hurts), +1 for the compatible one."""
    return -1.0 if setting == "conflicting" else 1.0


def quartiles_frame() -> pd.DataFrame:
    """A QUARTILES table (seeds pooled): the stage-1 objective of every run, its four quartiles at stage 2."""
    rows = []
    for setting, order, seed in runs():
        if seed != SEEDS[0]:
            continue  # pooled: one row per run, quartile and stage
        first = order.split("-")[0]
        offset = 0.1 if order.startswith("comply") else 0.0
        for quartile in range(1, 5):
            change = sign_of_setting(setting) * 0.4 * quartile + 0.2 * seed + offset
            for assignment, scale in (("own_margin", 1.0), ("other_seed", 0.5)):
                rows.append(
                    {
                        "setting": setting,
                        "method": "dpo",
                        "order": order,
                        "n_seeds": len(SEEDS),
                        "objective": first,
                        "metric": "reward_margin",
                        "assignment": assignment,
                        "binning_correlation": scale,
                        "own_stage": 1,
                        "stage": N_STAGES,
                        "quartile": quartile,
                        "n": 25,
                        "own_margin_min": quartile - 1.0,
                        "own_margin_max": float(quartile),
                        "mean_change": scale * change,
                        "mean_change_lo": scale * change - 0.3,
                        "mean_change_hi": scale * change + 0.2,
                        "share_fell": 0.5,
                        "share_flipped": 0.1 * quartile + 0.05 * seed,
                    }
                )
    return pd.DataFrame(rows, columns=tables.QUARTILES.names)


def stage_margins(setting: str, p: int, seed: int) -> list[float]:
    """Margins of pair ``p`` of the stage-1 objective after stages 0, 1, 2 (stage 0 = 0, as against the base)."""
    own = p - 2.0 + (0.5 if seed else 0.0)  # −2 … 3 (seed 1: −1.5 … 3.5); pair 2 of seed 0 is exactly 0
    return [0.0, own, own - 2.5 if setting == "conflicting" else own + 0.5]


def pairs_frame() -> pd.DataFrame:
    """A PAIR_SCORES table: both objectives of every run; the first one's margins from :func:`stage_margins`."""
    rows = []
    for setting, order, seed in runs():
        first = order.split("-")[0]
        for objective in SETTINGS[setting]:
            for p in range(N_PAIRS):
                values = stage_margins(setting, p, seed) if objective == first else [0.0, 0.3, 1.0]
                for stage, value in enumerate(values):
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
    return pd.DataFrame(rows, columns=tables.PAIR_SCORES.names)


def diagnostics_frame() -> pd.DataFrame:
    """A DIAGNOSTICS table: stage 2 of every run probed at steps 1, 3, 5, 7 against the stage-1 objective."""
    rows = []
    for setting, order, seed in runs():
        first, second = order.split("-")
        for step in (1, 3, 5, 7):
            for kind, other, cosine in (
                ("cross", first, sign_of_setting(setting) * 0.05 * step + 0.1 * seed),
                ("floor_current", second, 0.3 + 0.01 * step),
                ("floor_other", first, 0.4 - 0.01 * step),
            ):
                rows.append(
                    {
                        "setting": setting,
                        "method": "dpo",
                        "order": order,
                        "seed": seed,
                        "stage": 2,
                        "objective": second,
                        "step": step,
                        "kind": kind,
                        "other_objective": other,
                        "other_stage": 2 if kind == "floor_current" else 1,
                        "cosine": cosine,
                        "norm_current": 2.0 / step + seed,
                        "norm_other": 0.5 + 0.1 * step,
                        "n_current": 16,
                        "n_other": 16,
                        "seconds": 0.2,
                    }
                )
    return pd.DataFrame(rows, columns=tables.DIAGNOSTICS.names)


def movement_frame() -> pd.DataFrame:
    """A MOVEMENT table: stages 1 and 2 of every run, module ``all`` and one single module."""
    rows = []
    for setting, order, seed in runs():
        for stage in range(1, N_STAGES + 1):
            for module, scale in (("all", 1.0), ("model.layers.0.self_attn.q_proj", 0.1)):
                update = scale * (1.0 + stage + 0.5 * seed)
                rows.append(
                    {
                        "setting": setting,
                        "method": "dpo",
                        "order": order,
                        "seed": seed,
                        "stage": stage,
                        "objective": order.split("-")[stage - 1],
                        "module": module,
                        "update_norm": update,
                        "total_norm": scale * (2.0 * stage + seed),
                        "cosine_previous": np.nan if stage == 1 else sign_of_setting(setting) * 0.2 + 0.1 * seed,
                    }
                )
    return pd.DataFrame(rows, columns=tables.MOVEMENT.names)


@pytest.fixture(scope="module")
def quartiles() -> pd.DataFrame:
    return quartiles_frame()


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return pairs_frame()


@pytest.fixture(scope="module")
def diagnostics() -> pd.DataFrame:
    return diagnostics_frame()


@pytest.fixture(scope="module")
def movement() -> pd.DataFrame:
    return movement_frame()


def panel(fig: Figure, title: str):
    """The panel whose title is ``title`` or starts with ``title`` and a new line."""
    (found,) = [ax for ax in fig.axes if ax.get_title() == title or ax.get_title().startswith(title + "\n")]
    return found


def run_rows(frame: pd.DataFrame, setting: str, order: str) -> pd.DataFrame:
    """Rows of one (setting, order)."""
    return frame[(frame["setting"] == setting) & (frame["order"] == order)]


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test opened."""
    yield
    plt.close("all")


def test_quartile_bars_heights_are_pooled_changes(quartiles):
    fig = quartile_bars.draw(quartiles)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    ax = panel(fig, "conflicting: comply → refuse")
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert sorted(bars) == ["Q1", "Q2", "Q3", "Q4"]
    rows = run_rows(quartiles, "conflicting", "comply-refuse")
    check = rows[rows["assignment"] == "other_seed"]
    rows = rows[rows["assignment"] == "own_margin"]
    diamonds = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if c.get_offsets().shape[0]])
    for quartile in range(1, 5):
        (expected,) = rows.loc[rows["quartile"] == quartile, "mean_change"]
        (rect,) = bars[f"Q{quartile}"].patches  # one objective trained before the last stage
        assert rect.get_height() == pytest.approx(expected)
        (other,) = check.loc[check["quartile"] == quartile, "mean_change"]  # the RTM check's diamond
        assert other != pytest.approx(expected) and np.isclose(diamonds, other).any()
    q4 = rows[rows["quartile"] == 4]
    assert f"{q4['share_flipped'].item():.0%}" in [t.get_text() for t in ax.texts]
    assert "2 seeds pooled; CIs over pairs and seeds" in fig.get_suptitle()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["comply\nstage 1 → 2"]
    assert fig.get_supylabel() == "change in reward_margin since own stage (nats)"


def test_quartile_bars_stage_choice(quartiles):
    last = quartile_bars.draw(quartiles, stage="last")
    explicit = quartile_bars.draw(quartiles, stage=2)
    heights = [
        [r.get_height() for c in ax.containers if isinstance(c, BarContainer) for r in c]
        for fig in (last, explicit)
        for ax in fig.axes
    ]
    assert heights[:4] == heights[4:]
    early = quartile_bars.draw(quartiles, stage=1)  # nothing was trained before stage 1
    assert all(not ax.patches for ax in early.axes)
    with pytest.raises(ValueError, match="stage"):
        quartile_bars.draw(quartiles, stage="first")
    (empty,) = quartile_bars.draw(quartiles.iloc[:0]).axes
    assert "no quartile rows" in empty.texts[0].get_text()


def test_flip_plot_encodes_signs(pairs):
    fig = flip_plot.draw(pairs)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    for setting, objectives in SETTINGS.items():
        for order in orders(objectives):
            ax = panel(fig, common.order_title(setting, order))
            image = ax.images[0].get_array()
            expected = (
                pd.DataFrame(
                    [
                        (seed, f"{order.split('-')[0]}-{p}", *stage_margins(setting, p, seed))
                        for seed in SEEDS
                        for p in range(N_PAIRS)
                    ],
                    columns=["seed", "pair_id", 0, 1, 2],
                )
                .sort_values(["seed", "pair_id"])
                .sort_values(1, kind="stable")
            )
            np.testing.assert_array_equal(np.asarray(image), np.sign(expected[[0, 1, 2]].to_numpy()))
            flipped = int((np.sign(expected[1]) != np.sign(expected[2])).sum())
            assert f"{flipped} of {len(expected)} ({flipped / len(expected):.0%})" in ax.get_title()
    # conflicting: the zero pair and the positive pairs with margin < 2.5 turn negative; 2.5 → exactly 0
    assert "6 of 12 (50%)" in panel(fig, "conflicting: comply → refuse").get_title()


def test_flip_plot_subsamples_but_counts_every_pair(pairs):
    fig = flip_plot.draw(pairs, max_pairs=5)
    for ax in fig.axes:
        assert ax.images[0].get_array().shape == (5, N_STAGES + 1)
        assert " of 12 " in ax.get_title()
    again = flip_plot.draw(pairs, max_pairs=5)
    for first, second in zip(fig.axes, again.axes):
        np.testing.assert_array_equal(first.images[0].get_array(), second.images[0].get_array())


def test_gradient_cosine_lines_are_seed_means(diagnostics):
    fig = gradient_cosine.draw(diagnostics)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 2
    ax = panel(fig, "conflicting · gradient cosine")
    assert ax.get_ylim() == (-1.0, 1.0)
    label = gradient_cosine.line_label("comply-refuse", 2, "refuse", "comply", 1)
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    run = run_rows(diagnostics, "conflicting", "comply-refuse")
    expected = run[run.kind == "cross"].groupby("step")["cosine"].mean()
    np.testing.assert_allclose(line.get_xdata(), expected.index)
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    for kind, style in (("floor_current", ":"), ("floor_other", "-.")):  # the noise floors beside it
        (floor,) = [line for line in ax.get_lines() if line.get_label() == f"{label} · {kind}"]
        assert floor.get_linestyle() == style
        np.testing.assert_allclose(floor.get_ydata(), run[run.kind == kind].groupby("step")["cosine"].mean().to_numpy())
    assert panel(fig, "conflicting · gradient norms").get_yscale() == "log"
    smooth = panel(gradient_cosine.draw(diagnostics, smooth=2), "conflicting · gradient cosine")
    (line,) = [line for line in smooth.get_lines() if line.get_label() == label]
    np.testing.assert_allclose(line.get_ydata(), expected.rolling(2, min_periods=1).mean().to_numpy())


def test_gradient_cosine_empty_table_says_so(diagnostics):
    fig = gradient_cosine.draw(diagnostics.iloc[:0])
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert any("diagnostics.enabled: false" in t.get_text() for t in ax.texts)


def test_adapter_movement_bars_are_seed_means(movement):
    fig = adapter_movement.draw(movement)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    ax = panel(fig, "compatible: polite → comply")
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    rows = run_rows(movement, "compatible", "polite-comply")
    rows = rows[rows["module"] == "all"]
    expected = rows.groupby("stage")[["update_norm", "total_norm", "cosine_previous"]].mean()
    assert [r.get_height() for r in bars] == pytest.approx(expected["update_norm"].tolist())
    (line,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(line.get_ydata(), expected["total_norm"].to_numpy())
    # error bars span the range of update_norm across the seeds
    spans = [segment[:, 1] for segment in bars.errorbar.lines[2][0].get_segments()]
    ranges = rows.groupby("stage")["update_norm"].agg(["min", "max"]).to_numpy()
    np.testing.assert_allclose(np.array(spans), ranges)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"cos = {expected.loc[2, 'cosine_previous']:.2f}"]  # stage 2 only


@pytest.mark.parametrize(
    "module, frame",
    [
        ("quartile_bars", quartiles_frame),
        ("flip_plot", pairs_frame),
        ("gradient_cosine", diagnostics_frame),
        ("adapter_movement", movement_frame),
    ],
)
def test_cli_writes_png_and_pdf(module, frame, tmp_path):
    table = tmp_path / "table.parquet"
    frame().to_parquet(table)
    png, pdf = tmp_path / "out" / f"{module}.png", tmp_path / "out" / f"{module}.pdf"
    command = [
        sys.executable,
        "-m",
        f"seqpref.figures.{module}",
        str(table),
        str(common.STYLE),
        str(png),
        str(pdf),
        "--options",
        "{}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
