"""Training curves: TRL's logged metrics over the optimiser steps of all stages of each run.

One row of panels per setting, one column per metric. Each line is one stage of one order (mean over
seeds), on a cumulative step axis: stage k+1 continues where stage k stopped, and a dashed vertical line
in the order's colour marks where each later stage starts. Stages of one order share its colour, later
stages drawn darker.

CLI: ``python -m seqpref.figures.training_curves TRAINING.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import warnings

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common

RUN = ["setting", "method", "order", "seed"]


def stage_offsets(training: pd.DataFrame) -> pd.DataFrame:
    """Step offset of every run stage: the summed last steps of the run's earlier stages.

    Takes a TRAINING frame; returns one row per (setting, method, order, seed, stage) with ``last_step``
    (its largest step, over all metrics) and ``offset`` (0 for the first stage logged).
    """
    last = training.groupby(RUN + ["stage"], as_index=False)["step"].max().rename(columns={"step": "last_step"})
    last = last.sort_values(RUN + ["stage"], kind="stable")
    ends = last.groupby(RUN)["last_step"].cumsum()
    last["offset"] = (ends - last["last_step"]).astype("int64")
    return last.reset_index(drop=True)


def cumulative_steps(training: pd.DataFrame) -> pd.DataFrame:
    """``training`` with ``cum_step`` = step + offset of its stage (see :func:`stage_offsets`) added."""
    offsets = stage_offsets(training)[RUN + ["stage", "offset"]]
    merged = training.merge(offsets, on=RUN + ["stage"], how="left", validate="many_to_one")
    return merged.assign(cum_step=merged["step"] + merged["offset"])


def stage_colour(base: str, stage: int, n_stages: int) -> tuple:
    """Colour of ``stage`` of an order drawn in ``base``: stage 1 is ``base``, later stages up to 45% darker."""
    rgb = np.array(mcolors.to_rgb(base))
    darken = 0.45 * (stage - 1) / max(n_stages - 1, 1)
    return tuple(rgb * (1 - darken))


def stage_label(order: str, stage: int) -> str:
    """Legend entry ``"A → B · stage k (objective)"`` of one stage of one order."""
    names = common.order_objectives(order)
    objective = names[stage - 1] if 1 <= stage <= len(names) else "?"
    return f"{' → '.join(names)} · stage {stage} ({objective})"


def smoothed_line(rows: pd.DataFrame, smooth: int) -> pd.Series:
    """Seed-mean of ``value`` per ``cum_step`` (sorted), smoothed by a rolling mean of ``smooth`` points."""
    line = rows.groupby("cum_step")["value"].mean().sort_index()
    return line.rolling(smooth, min_periods=1).mean() if smooth > 1 else line


def draw_panel(ax, rows: pd.DataFrame, offsets: pd.DataFrame, orders: list[str], colours: list, smooth: int):
    """Draw one (setting, metric) panel: a line per (order, stage) and the dashed stage boundaries."""
    for index, order in enumerate(orders):
        base = colours[index % len(colours)]
        n_stages = len(common.order_objectives(order))
        for stage, stage_rows in rows[rows["order"] == order].groupby("stage", sort=True):
            line = smoothed_line(stage_rows, smooth)
            colour = stage_colour(base, int(stage), n_stages)
            ax.plot(line.index, line.to_numpy(), color=colour, label=stage_label(order, int(stage)))
            common.seed_band(ax, stage_rows, "cum_step", "value", colour)
        starts = offsets[(offsets["order"] == order) & (offsets["offset"] > 0)]
        for start in starts.groupby("stage")["offset"].mean():
            ax.axvline(start + 0.5, color=base, linestyle="--", linewidth=0.9, alpha=0.8, label="_boundary")


def missing_panel(ax, metric: str, setting: str) -> None:
    """Mark a panel whose metric was not logged (text in the panel and a Python warning)."""
    warnings.warn(
        f"training_curves: metric {metric!r} not logged for setting {setting!r}; panel left empty", stacklevel=3
    )
    ax.text(0.5, 0.5, f"{metric!r} not logged", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def draw(
    training: pd.DataFrame,
    metrics=("loss", "rewards/margins", "rewards/accuracies"),
    method: str | None = None,
    smooth: int = 1,
):
    """Draw the training curves of ``training`` (the TRAINING table) and return the Figure.

    One panel per (setting row, metric column) for ``method`` (None: :func:`common.default_method`); each line
    is one (order, stage), averaged
    over seeds, against the optimiser step counted across stages, smoothed by a rolling mean of
    ``smooth`` logged points (1 = raw). A metric that was not logged gives an empty panel with a note.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics: give at least one logged metric name")
    if int(smooth) != smooth or smooth < 1:
        raise ValueError(f"smooth must be an integer ≥ 1, got {smooth}")
    training, method = common.select_method(training, method, "training")
    offsets = stage_offsets(training)
    data = cumulative_steps(training)
    settings, orders = common.panel_grid(training)
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    fig, axes = plt.subplots(
        len(settings),
        len(metrics),
        squeeze=False,
        constrained_layout=True,
        figsize=(1.2 + 3.4 * len(metrics) + 2.4, 0.6 + 2.5 * len(settings)),
    )
    for row, setting in enumerate(settings):
        setting_offsets = offsets[offsets["setting"] == setting]
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            rows = data[(data["setting"] == setting) & (data["metric"] == metric)]
            ax.set_title(f"{setting} · {metric}")
            if rows.empty:
                missing_panel(ax, metric, setting)
                continue
            draw_panel(ax, rows, setting_offsets, orders[setting], colours, int(smooth))
            ax.set_ylabel(metric)
            if row == len(settings) - 1:
                ax.set_xlabel("optimiser step (cumulative over stages)")
        handles = next((ax.get_legend_handles_labels() for ax in axes[row] if ax.get_lines()), None)
        if handles:
            axes[row, -1].legend(*handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    smoothing = f" · rolling mean of {int(smooth)}" if smooth > 1 else ""
    fig.suptitle(f"training logs · {method} · {common.seeds_note(training)}{smoothing}")
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
