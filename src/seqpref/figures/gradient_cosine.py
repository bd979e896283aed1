"""Gradient cosine: is a later stage's gradient aligned with, orthogonal to, or opposed to an earlier one's?

One row of panels per setting. Left: the cosine between the LoRA gradient of the objective being trained
(stage ≥ 2) and the gradient of each earlier objective on a fixed probe batch, against the optimiser step
within the stage; one line per (order, stage, earlier objective), averaged over seeds, the lines of one
order in its colour (later ones darker). Beside each, in the same colour, its noise floors: dotted, the
cosine between the step's gradient and another batch of the *current* objective; dash-dotted, between two
disjoint batches of the *earlier* objective (seqpref.diagnostics). A cross-objective cosine means
"orthogonal" only against floors well above it. Right: the two gradient norms on a log scale (solid: the
current objective's, dashed: the earlier objective's). When the table is empty
(``diagnostics.enabled: false``) the figure says so instead.

CLI: ``python -m seqpref.figures.gradient_cosine DIAGNOSTICS.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from seqpref.figures import common

LINE = ["order", "stage", "objective", "other_objective", "other_stage"]
FLOOR_STYLES = {"floor_current": ":", "floor_other": "-."}  # kind → line style of the noise floors
EMPTY_TEXT = "no gradient diagnostics recorded (diagnostics.enabled: false)"


class PlainLogFormatter(mticker.LogFormatter):
    """Log-axis tick labels as plain numbers (``0.6``, ``2``) where matplotlib would label a tick at all."""

    def __call__(self, x, pos=None):
        """The label of tick ``x``: ``f"{x:g}"``, or ``""`` where ``LogFormatter`` would leave it unlabelled."""
        return f"{x:g}" if super().__call__(x, pos) else ""


def line_label(order: str, stage: int, objective: str, other: str, other_stage: int) -> str:
    """Legend entry ``"A → B · stage 2 (B) vs A (stage 1)"`` of one line."""
    names = " → ".join(common.order_objectives(order))
    return f"{names} · stage {stage} ({objective}) vs {other} (stage {other_stage})"


def seed_mean(rows: pd.DataFrame, column: str, smooth: int) -> pd.Series:
    """Seed-mean of ``column`` per ``step`` (sorted), smoothed by a rolling mean of ``smooth`` points."""
    line = rows.groupby("step")[column].mean().sort_index()
    return line.rolling(smooth, min_periods=1).mean() if smooth > 1 else line


def empty_figure(text: str = EMPTY_TEXT):
    """A one-panel Figure with ``text`` centred and no axes decoration (nothing to draw)."""
    fig, ax = plt.subplots(figsize=(6.0, 2.0), constrained_layout=True)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.3")
    ax.set_axis_off()
    fig.suptitle("gradient cosine")
    return fig


def shade(base: str, index: int, count: int) -> tuple:
    """Colour of line ``index`` of ``count`` lines of one order drawn in ``base``: later ones up to 45% darker."""
    rgb = np.array(mcolors.to_rgb(base))
    return tuple(rgb * (1 - 0.45 * index / max(count - 1, 1)))


def draw_row(ax_cos, ax_norm, rows: pd.DataFrame, orders: list[str], colours: list, smooth: int) -> None:
    """Draw one setting's cosine panel and norm panel from its diagnostics rows (all seeds).

    Each order takes a colour of ``colours`` (by its position in ``orders``); its lines, one per (stage,
    objective, earlier objective, earlier stage), are that colour, later ones darker. A cosine line on
    ``ax_cos`` carries :func:`line_label` as label; on ``ax_norm`` the current objective's norm is solid
    (once per stage) and the earlier objective's dashed.
    """
    ax_cos.axhline(0, color="0.3", linewidth=0.8, zorder=1)
    floors = rows[rows["kind"].isin(FLOOR_STYLES)]
    rows = rows[rows["kind"] == "cross"]
    for position, order in enumerate(orders):
        lines = list(rows[rows["order"] == order].groupby(LINE[1:], sort=True))
        drawn = set()
        for index, (key, group) in enumerate(lines):
            stage, objective, other, other_stage = key
            colour = shade(colours[position % len(colours)], index, len(lines))
            label = line_label(order, int(stage), objective, other, int(other_stage))
            cosine = seed_mean(group, "cosine", smooth)
            ax_cos.plot(cosine.index, cosine.to_numpy(), color=colour, label=label, zorder=2)
            common.seed_band(ax_cos, group, "step", "cosine", colour)
            same_run = (floors["order"] == order) & (floors["stage"] == stage)
            for kind, style in FLOOR_STYLES.items():
                which = floors["kind"] == kind
                if kind == "floor_other":
                    which &= floors["other_objective"] == other
                floor = floors[same_run & which]
                if len(floor):
                    line = seed_mean(floor, "cosine", smooth)
                    ax_cos.plot(
                        line.index,
                        line.to_numpy(),
                        color=colour,
                        linestyle=style,
                        linewidth=1.0,
                        label=f"{label} · {kind}",
                        zorder=2,
                    )
            norm = seed_mean(group, "norm_other", smooth)
            ax_norm.plot(norm.index, norm.to_numpy(), color=colour, linestyle="--", label=f"{label} · norm_other")
            if stage not in drawn:  # the current gradient is the same against every earlier objective
                drawn.add(stage)
                norm = seed_mean(group, "norm_current", smooth)
                ax_norm.plot(norm.index, norm.to_numpy(), color=colour, label=f"{label} · norm_current")
    ax_cos.set_ylim(-1.0, 1.0)
    ax_norm.set_yscale("log")
    ax_norm.yaxis.set_major_formatter(PlainLogFormatter())
    ax_norm.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def draw(diagnostics: pd.DataFrame, method: str | None = None, smooth: int = 1):
    """Draw the gradient cosines and norms of ``diagnostics`` (the DIAGNOSTICS table); returns the Figure.

    One row per setting for ``method`` (None: :func:`common.default_method`): left, cos(∇L current objective,
    ∇L earlier objective) per optimiser
    step, one line per (order, stage, earlier objective) averaged over seeds and smoothed by a rolling mean
    of ``smooth`` probes (1 = raw); right, both gradient norms (log scale). An empty table (diagnostics
    turned off) gives a single panel saying so.
    """
    if int(smooth) != smooth or smooth < 1:
        raise ValueError(f"smooth must be an integer ≥ 1, got {smooth}")
    if diagnostics.empty:
        return empty_figure()
    diagnostics, method = common.select_method(diagnostics, method, "diagnostics")
    settings, orders = common.panel_grid(diagnostics)
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    fig, axes = plt.subplots(
        len(settings), 2, squeeze=False, constrained_layout=True, figsize=(11.0, 0.8 + 2.6 * len(settings))
    )
    for row, setting in enumerate(settings):
        ax_cos, ax_norm = axes[row]
        rows = diagnostics[diagnostics["setting"] == setting]
        draw_row(ax_cos, ax_norm, rows, orders[setting], colours, int(smooth))
        ax_cos.set_title(f"{setting} · gradient cosine")
        ax_norm.set_title(f"{setting} · gradient norms")
        ax_cos.set_ylabel("cos(∇L current, ∇L earlier)")
        ax_norm.set_ylabel("‖∇L‖₂ (LoRA parameters)")
        if row == len(settings) - 1:
            for ax in (ax_cos, ax_norm):
                ax.set_xlabel("optimiser step within the stage")
        handles, labels = ax_cos.get_legend_handles_labels()
        kept = [(h, t) for h, t in zip(handles, labels) if " · floor_" not in t]  # floors: by style, below
        styles = [
            Line2D([], [], color="0.3", linestyle=":"),
            Line2D([], [], color="0.3", linestyle="-."),
            Line2D([], [], color="0.3", linestyle="-"),
            Line2D([], [], color="0.3", linestyle="--"),
        ]
        ax_norm.legend(
            [h for h, _ in kept] + styles,
            [t for _, t in kept]
            + [
                "cosine floor: two batches of the current objective",
                "cosine floor: two batches of the earlier objective",
                "norms: current objective",
                "norms: earlier objective (probe)",
            ],
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0,
        )
    smoothing = f" · rolling mean of {int(smooth)}" if smooth > 1 else ""
    fig.suptitle(
        f"LoRA gradient of the stage's objective vs each earlier objective's · {method} · "
        f"{common.seeds_note(diagnostics)}{smoothing}"
    )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
