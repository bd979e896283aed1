"""Margin trajectories: each method's path through the plane of (objective A margin, objective B margin).

The preference-space analogue of seed 001's loss-space figure. One panel per setting of two
objectives: x is the first objective's metric, y the second's (objectives in sorted order), each run
(method, order) a line through stages 0 (the base, shared by all) … K, with the CI over pairs and
seeds as error bars and the stage number beside each point. A sequential run moves along one axis at
a time and its later stage pulls back the earlier objective when they conflict; a joint method that
keeps both objectives heads up and to the right.

CLI: ``python -m seqpref.figures.margin_trajectory SUMMARY.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common
from seqpref.figures.method_comparison import METHOD_COLOURS, run_label, run_order

LINESTYLES = ("-", "--", ":", "-.")


def trajectory(rows: pd.DataFrame, x_objective: str, y_objective: str, metric: str) -> pd.DataFrame:
    """One run's path: a frame indexed by stage with ``x``, ``x_lo``, ``x_hi``, ``y``, ``y_lo``, ``y_hi``
    (``metric`` of the two objectives and their CIs), stages present for both only, sorted."""

    def side(objective):
        one = rows[rows["objective"] == objective].set_index("stage")
        return one[[metric, f"{metric}_lo", f"{metric}_hi"]]

    x, y = side(x_objective), side(y_objective)
    x.columns, y.columns = ["x", "x_lo", "x_hi"], ["y", "y_lo", "y_hi"]
    return x.join(y, how="inner").sort_index()


def draw_panel(ax, rows: pd.DataFrame, metric: str) -> list[str]:
    """Draw one setting's trajectories on ``ax``; returns the two objectives (x, y). A setting with a
    number of objectives other than two gets a note instead."""
    objectives = sorted(rows["objective"].unique())
    if len(objectives) != 2:
        ax.text(
            0.5,
            0.5,
            f"{len(objectives)} objectives: the trajectory needs two",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return objectives
    seen: dict[str, int] = {}
    for method, order in run_order(rows):
        path = trajectory(rows[(rows["method"] == method) & (rows["order"] == order)], *objectives, metric)
        style = LINESTYLES[seen.get(method, 0) % len(LINESTYLES)]
        seen[method] = seen.get(method, 0) + 1
        colour = METHOD_COLOURS.get(method, "0.4")
        ax.errorbar(
            path["x"],
            path["y"],
            xerr=np.vstack([path["x"] - path["x_lo"], path["x_hi"] - path["x"]]).clip(0),
            yerr=np.vstack([path["y"] - path["y_lo"], path["y_hi"] - path["y"]]).clip(0),
            color=colour,
            linestyle=style,
            marker="o",
            markersize=3.5,
            linewidth=1.3,
            elinewidth=0.6,
            capsize=1.5,
            label=run_label(method, order).replace("\n", " "),
        )
        for stage, point in path.iterrows():
            if stage > 0:
                ax.annotate(
                    str(stage),
                    (point["x"], point["y"]),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6.5,
                    color=colour,
                )
    ax.axhline(0, color="0.6", linewidth=0.6, zorder=0)
    ax.axvline(0, color="0.6", linewidth=0.6, zorder=0)
    unit = common.metric_unit(metric)
    ax.set_xlabel(f"{objectives[0]} {metric}" + (f" ({unit})" if unit else ""))
    ax.set_ylabel(f"{objectives[1]} {metric}" + (f" ({unit})" if unit else ""))
    return objectives


def draw(summary: pd.DataFrame, metric: str = "reward_margin"):
    """Draw the margin trajectories of ``summary`` (the SUMMARY table) for ``metric``; returns the Figure.

    One panel per setting; every (method, order) is a line through its stages in the plane of the two
    objectives' ``metric``, with CIs over pairs and seeds as error bars.
    """
    if metric not in summary.columns or not pd.api.types.is_numeric_dtype(summary[metric]):
        raise ValueError(f"metric {metric!r} is not a numeric summary column")
    settings = sorted(summary["setting"].unique())
    ncols = min(len(settings), 2)
    nrows = int(np.ceil(len(settings) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, squeeze=False, constrained_layout=True, figsize=(0.5 + 4.4 * ncols, 0.9 + 3.9 * nrows)
    )
    for i in range(len(settings), nrows * ncols):
        fig.delaxes(axes.flat[i])
    for ax, setting in zip(axes.flat, settings):
        draw_panel(ax, summary[summary["setting"] == setting], metric)
        ax.set_title(setting)
    handles = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 4),
            fontsize=7,
            title="run (numbers: stage; stage 0 = base)",
            title_fontsize=7.5,
        )
    fig.suptitle(f"{metric} of both objectives across stages · {common.seeds_note(summary)}; error bars: 95% CI")
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
