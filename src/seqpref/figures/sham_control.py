"""Sham control: how much of each change is stage k's preferences, and how much any further training.

One panel per setting. For every sequential run (method, order), stage k with a sham and objective
not trained at k, two bars: that objective's change from stage k−1 under the real stage k and under
the sham stage k (same prompts, responses and steps, a seeded half of the labels swapped), each with
its CI over pairs and seeds; the control label (``specific_degradation``, ``specific_transfer``,
``drift``, ``inconclusive``, ``stable``) is written above the pair. The gap between the bars is the
specific effect.

CLI: ``python -m seqpref.figures.sham_control CONTROLS.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common

#: how each control label is written above its pair of bars
LABEL_TEXT = {
    "specific_degradation": "specific ▼",
    "specific_transfer": "specific ▲",
    "drift": "drift",
    "inconclusive": "inconclusive",
    "stable": "",
    "control_invalid": "no valid control",
}


def bar_groups(rows: pd.DataFrame) -> pd.DataFrame:
    """The groups of one setting's panel in drawing order (method, order, stage, objective), with a
    tick label per group (``method a → b`` / ``[objective] k``)."""
    rows = rows.sort_values(["method", "order", "stage", "objective"]).reset_index(drop=True)
    ticks = [
        f"{m} {' → '.join(common.order_objectives(o))}\n[{obj}] stage {k}"
        for m, o, k, obj in zip(rows["method"], rows["order"], rows["stage"], rows["objective"])
    ]
    return rows.assign(tick=ticks)


def draw(controls: pd.DataFrame, method: str | None = None):
    """Draw real-vs-sham changes of ``controls`` (the CONTROLS table), one panel per setting, and
    return the Figure; ``method`` keeps one method's runs (all sequential methods when None)."""
    if controls.empty:
        raise ValueError("controls: no rows (is controls.sham on, with a sequential method of >= 2 stages?)")
    rows = controls if method is None else common.select_method(controls, method, "controls")[0]
    settings = sorted(rows["setting"].unique())
    widest = max(len(rows[rows["setting"] == s]) for s in settings)
    fig, axes = plt.subplots(
        len(settings),
        1,
        squeeze=False,
        constrained_layout=True,
        figsize=(2.5 + 1.3 * widest, 1.2 + 2.8 * len(settings)),
    )
    metric = rows["metric"].iloc[0]
    unit = common.metric_unit(metric)
    for ax, setting in zip(axes[:, 0], settings):
        groups = bar_groups(rows[rows["setting"] == setting])
        x = np.arange(len(groups))
        for offset, arm, colour, hatch in ((-0.18, "real", "#0072B2", None), (0.18, "sham", "#BBBBBB", "//")):
            value = groups[f"change_{arm}"].to_numpy()
            errors = common.error_bars(value, groups[f"change_{arm}_lo"], groups[f"change_{arm}_hi"])
            ax.bar(
                x + offset,
                value,
                width=0.36,
                color=colour,
                hatch=hatch,
                edgecolor="0.3",
                linewidth=0.5,
                yerr=errors,
                capsize=2,
                zorder=2,
                label=f"{arm} stage k",
            )
        top = np.nanmax(groups[["change_real_hi", "change_sham_hi"]].to_numpy(), axis=1)
        span = float(
            np.nanmax(
                np.abs(groups[["change_real_lo", "change_real_hi", "change_sham_lo", "change_sham_hi"]].to_numpy())
            )
        )
        for xi, y, label in zip(x, top, groups["control_label"]):
            ax.text(xi, max(y, 0) + 0.04 * span, LABEL_TEXT.get(label, label), ha="center", va="bottom", fontsize=7)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_xticks(x, groups["tick"], fontsize=7)
        ax.set_title(f"{setting}: change from stage k−1, real stage k vs sham")
        ax.set_ylabel(f"change in {metric}" + (f" ({unit})" if unit else ""))
        ax.legend(fontsize=7)
    fig.suptitle(
        f"sham control on {metric} · {common.seeds_note(rows)}; error bars: 95% CI\n"
        "sham = stage k retrained from stage k−1 with a seeded half of its pairs' labels swapped"
    )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
