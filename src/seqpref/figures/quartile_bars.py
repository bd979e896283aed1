"""Quartile bars: does a later stage take margin from the pairs an objective had learned best, or from all?

Rows of panels are settings, columns are the setting's orders (sorted alphabetically). In a panel, every
objective trained before the chosen later stage gets a group of four bars: its eval pairs split into
quartiles by their margin right after the objective's own stage (Q1 lowest … Q4 highest), each bar the
mean change of the metric from the own stage to the later stage (seeds pooled), with its bootstrap CI
over pairs and seeds as error bar. The number on each bar is the share of the quartile's pairs whose
margin changed sign. With two or more seeds, a black diamond on each bar is the same quartile's mean change
when the pairs are assigned to quartiles by *another seed's* own-stage margins (seqpref.transfer): where
the bars fall with the margin but the diamonds do not, the pattern is regression to the mean.

CLI: ``python -m seqpref.figures.quartile_bars QUARTILES.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common

RUN = ["setting", "method", "order"]
QUARTILES = (1, 2, 3, 4)
#: bar colour of Q1 … Q4: light → dark blue (a quartile's rank, not a sign)
QUARTILE_COLOURS = ("#c6dbef", "#6baed6", "#2171b5", "#08306b")
VALUES = ["mean_change", "mean_change_lo", "mean_change_hi", "share_flipped"]
OTHER_SEED = "quartiles by another seed's margins"


def check_stage(stage) -> str | int:
    """``stage`` as ``"last"`` or an int ≥ 1; ``ValueError`` for anything else."""
    if stage == "last":
        return stage
    if isinstance(stage, bool) or not isinstance(stage, (int, np.integer)) or stage < 1:
        raise ValueError(f"stage must be 'last' or an integer ≥ 1, got {stage!r}")
    return int(stage)


def at_stage(quartiles: pd.DataFrame, stage) -> pd.DataFrame:
    """Rows of ``quartiles`` at the later ``stage``: ``"last"`` = each run's largest stage, or an int."""
    if stage == "last":
        last = quartiles.groupby(RUN)["stage"].transform("max")
        return quartiles[quartiles["stage"] == last]
    return quartiles[quartiles["stage"] == stage]


def panel_bars(rows: pd.DataFrame) -> pd.DataFrame:
    """The bars of one (setting, order) panel.

    Takes that panel's quartile rows at one later stage (QUARTILES, seeds pooled); returns one row per
    (objective, quartile), objectives in training order, with ``own_stage``, ``stage``, ``n_seeds``,
    ``mean_change``, ``mean_change_lo``, ``mean_change_hi`` and ``share_flipped``.
    """
    columns = ["objective", "quartile", "own_stage", "stage", "n_seeds"] + VALUES
    if rows.empty:
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["objective", "quartile"])
    bars = grouped[VALUES].mean()
    bars["own_stage"] = grouped["own_stage"].min()
    bars["stage"] = grouped["stage"].max()
    bars["n_seeds"] = grouped["n_seeds"].max()
    bars = bars.reset_index()
    trained = common.order_objectives(rows["order"].iloc[0])
    rank = {name: i for i, name in enumerate(trained)}
    bars["_rank"] = bars["objective"].map(lambda name: rank.get(name, len(trained)))
    return bars.sort_values(["_rank", "objective", "quartile"], kind="stable")[columns].reset_index(drop=True)


def group_label(objective: str, bars: pd.DataFrame) -> str:
    """Tick label of an objective's bar group: its name and ``stage own → later``."""
    own, later = int(bars["own_stage"].min()), int(bars["stage"].max())
    return f"{objective}\nstage {own} → {later}"


def draw_panel(ax, bars: pd.DataFrame, width: float = 0.2, check: pd.DataFrame | None = None) -> None:
    """Draw one panel's grouped bars (from :func:`panel_bars`) on ``ax``, with CIs and flip shares.

    The bars of quartile q are one BarContainer labelled ``Qq``; heights are the mean changes (seeds pooled).
    ``check`` (:func:`panel_bars` of the ``other_seed`` assignment) adds a diamond per bar at its mean change.
    """
    ax.axhline(0, color="0.3", linewidth=0.8, zorder=1)
    if bars.empty:
        ax.text(
            0.5,
            0.5,
            "no objective trained before this stage",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
        ax.set_xticks([])
        return
    objectives = list(dict.fromkeys(bars["objective"]))
    centres = np.arange(len(objectives), dtype=float)
    for index, quartile in enumerate(QUARTILES):
        part = bars[bars["quartile"] == quartile].set_index("objective").reindex(objectives)
        x = centres + (index - (len(QUARTILES) - 1) / 2) * width
        heights = part["mean_change"].to_numpy(dtype=float)
        below = np.clip(heights - part["mean_change_lo"].to_numpy(dtype=float), 0, None)
        above = np.clip(part["mean_change_hi"].to_numpy(dtype=float) - heights, 0, None)
        ax.bar(
            x,
            heights,
            width=width * 0.95,
            color=QUARTILE_COLOURS[index],
            label=f"Q{quartile}",
            zorder=2,
            yerr=np.vstack([below, above]),
            error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "0.2"},
        )
        if check is not None and not check.empty:
            other = check[check["quartile"] == quartile].set_index("objective").reindex(objectives)
            ax.scatter(
                x,
                other["mean_change"].to_numpy(dtype=float),
                marker="D",
                s=12,
                color="black",
                zorder=3,
                label=OTHER_SEED if index == 0 else None,
            )
        for xi, height, low, high, flipped in zip(x, heights, below, above, part["share_flipped"]):
            if not np.isfinite(height) or not np.isfinite(flipped):
                continue
            up = height >= 0
            tip = height + (np.nan_to_num(high) if up else -np.nan_to_num(low))
            ax.annotate(
                f"{flipped:.0%}",
                (xi, tip),
                xytext=(0, 1.5 if up else -1.5),
                textcoords="offset points",
                ha="center",
                va="bottom" if up else "top",
                fontsize=6.5,
                color="0.25",
            )
    labels = [group_label(o, bars[bars["objective"] == o]) for o in objectives]
    ax.set_xticks(centres, labels)
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.6, len(objectives) - 0.4)
    ax.grid(False, axis="x")
    ax.margins(y=0.12)  # room for the flip shares beyond the error bars


def draw(quartiles: pd.DataFrame, method: str | None = None, stage="last"):
    """Draw the quartile bars of ``quartiles`` (the QUARTILES table) and return the Figure.

    One panel per (setting row, order column) for ``method`` (None: :func:`common.default_method`). At the
    later ``stage`` (``"last"`` = each
    run's last stage, or a stage number), each objective trained earlier gets four bars: the pooled
    ``mean_change`` of its own-stage margin quartiles Q1 (lowest) … Q4 (highest), with the CI over pairs and seeds
    as error bars, annotated with the share of pairs whose sign flipped. The y-axis is shared.
    An empty table (every run trains one objective) gives a single panel saying so.
    """
    stage = check_stage(stage)
    if quartiles.empty:  # every run trains a single objective: nothing is trained before a later stage
        fig, ax = plt.subplots(figsize=(6.0, 2.0), constrained_layout=True)
        ax.text(
            0.5,
            0.5,
            "no quartile rows: no objective was trained before a later stage",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.3",
        )
        ax.set_axis_off()
        return fig
    quartiles, method = common.select_method(quartiles, method, "quartiles")
    metrics = sorted(quartiles["metric"].dropna().unique().tolist())
    if len(metrics) != 1:
        raise ValueError(f"quartiles: expected rows of one metric, found {metrics}")
    (metric,) = metrics
    chosen = at_stage(quartiles, stage)
    check = chosen[chosen["assignment"] == "other_seed"]
    chosen = chosen[chosen["assignment"] == "own_margin"]
    settings, orders = common.panel_grid(quartiles)
    ncols = max(len(o) for o in orders.values())
    n_groups = max(chosen.groupby(["setting", "order"])["objective"].nunique().max(), 1) if len(chosen) else 1
    fig, axes = plt.subplots(
        len(settings),
        ncols,
        squeeze=False,
        sharey=True,
        constrained_layout=True,
        figsize=(max(7.5, 0.8 + ncols * (1.4 + 1.6 * n_groups)), 1.2 + 2.7 * len(settings)),
    )
    common.remove_unused(fig, axes, orders, settings)
    unit = common.metric_unit(metric)
    for row, setting in enumerate(settings):
        for col, order in enumerate(orders[setting]):
            ax = axes[row, col]
            rows = chosen[(chosen["setting"] == setting) & (chosen["order"] == order)]
            other = check[(check["setting"] == setting) & (check["order"] == order)]
            draw_panel(ax, panel_bars(rows), check=panel_bars(other) if len(other) else None)
            ax.set_title(common.order_title(setting, order))
    fig.supylabel(f"change in {metric} since own stage" + (f" ({unit})" if unit else ""), fontsize=9)
    handles, labels = next((ax.get_legend_handles_labels() for ax in fig.axes if ax.containers), ([], []))
    if handles:
        names = {
            "Q1": "Q1 (lowest own-stage margin)",
            "Q4": "Q4 (highest)",
            OTHER_SEED: "◆ " + OTHER_SEED + " (RTM check)",
        }
        fig.legend(
            handles,
            [names.get(label, label) for label in labels],
            loc="outside lower center",
            ncols=len(handles),
            title="quartiles of the pairs by their margin right after their own stage\n"
            "numbers on the bars: % of the quartile's pairs whose sign flipped since then",
            title_fontsize=7.5,
        )
    when = "the last stage" if stage == "last" else f"stage {stage}"
    fig.suptitle(
        f"{metric} change from each objective's own stage to {when}, by quartile\n{method} · "
        f"{common.seeds_note(quartiles)}; error bars: bootstrap CIs"
    )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
