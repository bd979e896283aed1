"""The method figures draw the numbers of their tables: final margins, the first objective's
degradation, and the trajectories through the two objectives' plane."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer, ErrorbarContainer  # noqa: E402

from seqpref import tables  # noqa: E402
from seqpref.figures import margin_trajectory, method_comparison  # noqa: E402

RUNS = [("dpo", "a-b"), ("dpo", "b-a"), ("mix", "a-b"), ("maxright", "a-b")]
#: reward margin of (a, b) at stages 0, 1, 2 per run
PATHS = {
    ("dpo", "a-b"): [(0.0, 0.0), (1.0, -0.2), (0.1, 1.1)],
    ("dpo", "b-a"): [(0.0, 0.0), (-0.3, 1.2), (0.9, 0.2)],
    ("mix", "a-b"): [(0.0, 0.0), (0.4, 0.5), (0.6, 0.7)],
    ("maxright", "a-b"): [(0.0, 0.0), (0.5, 0.3), (0.5, 0.6)],
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _transfer() -> pd.DataFrame:
    rows = []
    for (method, order), path in PATHS.items():
        first = order.split("-")[0]
        for i, objective in enumerate("ab"):
            values = [point[i] for point in path]
            own = 1 if method == "mix" or method == "maxright" or objective == first else 2
            rows.append(
                {
                    "setting": "s",
                    "method": method,
                    "order": order,
                    "n_seeds": 2,
                    "objective": objective,
                    "metric": "reward_margin",
                    "own_stage": own,
                    "last_stage": 2,
                    "final": values[2],
                    "final_lo": values[2] - 0.1,
                    "final_hi": values[2] + 0.2,
                    "bwt": values[2] - values[own],
                    "bwt_lo": values[2] - values[own] - 0.1,
                    "bwt_hi": values[2] - values[own] + 0.1,
                    "fwt": 0.0,
                    "fwt_lo": 0.0,
                    "fwt_hi": 0.0,
                }
            )
    return pd.DataFrame(rows, columns=tables.TRANSFER.names)


def _summary() -> pd.DataFrame:
    rows = []
    for (method, order), path in PATHS.items():
        for stage, point in enumerate(path):
            for i, objective in enumerate("ab"):
                rows.append(
                    {
                        "setting": "s",
                        "method": method,
                        "order": order,
                        "n_seeds": 2,
                        "stage": stage,
                        "objective": objective,
                        "reward_margin": point[i],
                        "reward_margin_lo": point[i] - 0.05,
                        "reward_margin_hi": point[i] + 0.05,
                    }
                )
    return pd.DataFrame(rows)


def test_method_comparison_bars_are_final_values_and_first_objective_degradation():
    fig = method_comparison.draw(_transfer())
    left, right = fig.axes[:2]
    ticks = [t.get_text() for t in left.get_xticklabels()]
    assert ticks == ["dpo\na → b", "dpo\nb → a", "mix\njoint", "maxright\njoint"]  # methods in fixed order
    bars = {c.get_label(): c for c in left.containers if isinstance(c, BarContainer)}
    for i, objective in enumerate("ab"):
        heights = [r.get_height() for r in bars[objective]]
        assert heights == pytest.approx([PATHS[run][2][i] for run in RUNS])
    (degradation,) = [c for c in right.containers if isinstance(c, BarContainer)]
    expected = [
        PATHS[("dpo", "a-b")][2][0] - PATHS[("dpo", "a-b")][1][0],  # a, trained at stage 1
        PATHS[("dpo", "b-a")][2][1] - PATHS[("dpo", "b-a")][1][1],  # b, trained at stage 1
        PATHS[("mix", "a-b")][2][0] - PATHS[("mix", "a-b")][1][0],  # a, first in config order
        PATHS[("maxright", "a-b")][2][0] - PATHS[("maxright", "a-b")][1][0],
    ]
    assert [r.get_height() for r in degradation] == pytest.approx(expected)
    assert "[b]" in [t.get_text() for t in right.get_xticklabels()][1]
    assert "2 seeds pooled" in fig.get_suptitle()


def test_method_comparison_names_a_missing_metric():
    with pytest.raises(ValueError, match="no rows of metric 'ln_margin'; metrics present: \\['reward_margin'\\]"):
        method_comparison.draw(_transfer(), metric="ln_margin")


def test_margin_trajectory_lines_pass_through_every_stage():
    fig = margin_trajectory.draw(_summary())
    (ax,) = fig.axes
    lines = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert sorted(lines) == sorted(["dpo a → b", "dpo b → a", "mix joint", "maxright joint"])
    data_line = lines["dpo b → a"].lines[0]
    assert np.column_stack([data_line.get_xdata(), data_line.get_ydata()]) == pytest.approx(
        np.array(PATHS[("dpo", "b-a")])
    )
    assert lines["dpo a → b"].lines[0].get_linestyle() == "-" and data_line.get_linestyle() == "--"
    assert ax.get_xlabel().startswith("a reward_margin") and ax.get_ylabel().startswith("b reward_margin")
    assert sorted(t.get_text() for t in ax.texts) == sorted(["1", "2"] * 4)  # stage numbers, base unlabelled


def test_margin_trajectory_notes_settings_without_two_objectives():
    three = _summary()
    extra = three[three["objective"] == "a"].assign(objective="c")
    fig = margin_trajectory.draw(pd.concat([three, extra]))
    assert "needs two" in fig.axes[0].texts[0].get_text()
