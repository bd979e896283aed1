"""Pair scatter: what the next stage does to each eval pair of the objective just trained.

Rows of panels are settings, columns are the setting's orders (sorted alphabetically). In a panel, every
objective trained at a stage k before the last contributes one point per eval pair (and seed):
x = its metric after stage k (right after it was trained), y = after stage k+1. Points on the diagonal
were untouched by the next stage; points that cross from x > 0 to y < 0 were flipped from preferred to
dispreferred (relative to the base model). Corner texts count the pairs in each quadrant.

CLI: ``python -m seqpref.figures.pair_scatter PAIRS.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common

KEYS = ["seed", "pair_id"]


def transitions(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Stage k → k+1 values of each objective trained at stage k < K, for one (setting, order).

    Takes that panel's pair-score rows and the metric column; returns a frame with ``objective``,
    ``stage`` (k), ``seed``, ``pair_id``, ``x`` (metric after stage k) and ``y`` (after stage k+1), pairs
    matched on (seed, pair_id). Empty (with those columns) when the order has a single stage.
    """
    order = rows["order"].iloc[0]
    last = int(rows["stage"].max())
    parts = []
    for stage, objective in enumerate(common.order_objectives(order)[: max(last - 1, 0)], start=1):
        own = rows[(rows["objective"] == objective) & (rows["stage"] == stage)]
        after = rows[(rows["objective"] == objective) & (rows["stage"] == stage + 1)]
        merged = own[KEYS + [metric]].merge(after[KEYS + [metric]], on=KEYS, suffixes=("_x", "_y"))
        merged = merged.rename(columns={f"{metric}_x": "x", f"{metric}_y": "y"})
        parts.append(merged.assign(objective=objective, stage=stage))
    columns = ["objective", "stage", "seed", "pair_id", "x", "y"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def flip_share(points: pd.DataFrame) -> tuple[float, int]:
    """Share of the pairs with x > 0 whose y < 0 (preferred → dispreferred), and how many had x > 0."""
    positive = points["x"] > 0
    n = int(positive.sum())
    return (float((points["y"][positive] < 0).mean()) if n else float("nan")), n


def subsample(points: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most ``max_points`` rows of ``points``, chosen with ``numpy.random.default_rng(0)``, in their order."""
    if len(points) <= max_points:
        return points
    keep = np.sort(np.random.default_rng(0).choice(len(points), size=max_points, replace=False))
    return points.iloc[keep]


def quadrant_counts(ax, points: pd.DataFrame) -> None:
    """Write the number (and share) of pairs in each sign quadrant in the corners of ``ax``."""
    total = max(len(points), 1)
    corners = {
        (True, True): (0.98, 0.98, "right", "top"),
        (False, True): (0.02, 0.98, "left", "top"),
        (False, False): (0.02, 0.02, "left", "bottom"),
        (True, False): (0.98, 0.02, "right", "bottom"),
    }
    for (x_positive, y_positive), (u, v, ha, va) in corners.items():
        inside = ((points["x"] > 0) == x_positive) & ((points["y"] > 0) == y_positive)
        count = int(inside.sum())
        ax.text(
            u,
            v,
            f"{count} ({count / total:.0%})",
            transform=ax.transAxes,
            ha=ha,
            va=va,
            fontsize=7,
            color="0.3",
            zorder=4,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1},
        )


def draw_panel(ax, points: pd.DataFrame, colours: dict, alpha: float, max_points: int, unit: str, metric: str):
    """Scatter one panel's ``points`` (from :func:`transitions`) on ``ax`` with reference lines and counts."""
    ax.axhline(0, color="0.6", linewidth=0.8, zorder=1)
    ax.axvline(0, color="0.6", linewidth=0.8, zorder=1)
    ax.axline((0, 0), slope=1, color="0.3", linestyle="--", linewidth=0.8, zorder=1)
    suffix = f" ({unit})" if unit else ""
    ax.set_xlabel(f"{metric} after its stage k{suffix}")
    ax.set_ylabel(f"{metric} after stage k+1{suffix}")
    if points.empty:
        ax.text(0.5, 0.5, "needs ≥ 2 stages", transform=ax.transAxes, ha="center", va="center")
        return
    shown = subsample(points, max_points)
    for (stage, objective), group in points.groupby(["stage", "objective"], sort=True):
        share, n_positive = flip_share(group)
        label = f"{objective}, stage {stage}→{stage + 1}: {share:.0%} of {n_positive} flipped + → −"
        sample = shown[(shown["stage"] == stage) & (shown["objective"] == objective)]
        ax.scatter(
            sample["x"],
            sample["y"],
            s=9,
            alpha=alpha,
            linewidths=0,
            color=colours[objective],
            label=label,
            zorder=2,
            rasterized=True,
        )
    values = np.abs(points[["x", "y"]].to_numpy(dtype=float))
    limit = float(np.nanmax(values)) * 1.1 if np.isfinite(values).any() else 0.0
    limit = limit if limit > 0 else 1.0
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal", adjustable="box")
    quadrant_counts(ax, points)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.17), borderaxespad=0, markerscale=1.5, handletextpad=0.2)


def draw(
    pairs: pd.DataFrame,
    metric: str = "reward_margin",
    method: str | None = None,
    alpha: float = 0.4,
    max_points: int = 2000,
):
    """Draw the stage k → k+1 pair scatter of ``pairs`` (the PAIR_SCORES table); returns the Figure.

    One panel per (setting row, order column). For each objective trained at a stage k below the last,
    each of its eval pairs (per seed) is a point (``metric`` after stage k, after stage k+1), coloured by
    objective; at most ``max_points`` points per panel are drawn (deterministic subsample), while the
    counts and flip shares use every pair.
    """
    common.check_pair_metric(pairs, metric)
    if int(max_points) < 1:
        raise ValueError(f"max_points must be ≥ 1, got {max_points}")
    pairs, method = common.select_method(pairs, method, "pairs")
    settings, orders = common.panel_grid(pairs)
    colours = common.objective_colours(pairs["objective"].unique())
    ncols = max(len(o) for o in orders.values())
    fig, axes = plt.subplots(
        len(settings),
        ncols,
        squeeze=False,
        constrained_layout=True,
        figsize=(0.4 + 3.6 * ncols, 0.6 + 3.9 * len(settings)),
    )
    fig.get_layout_engine().set(h_pad=0.15)  # room between a panel's legend and the next row's title
    common.remove_unused(fig, axes, orders, settings)
    unit = common.metric_unit(metric)
    for row, setting in enumerate(settings):
        for col, order in enumerate(orders[setting]):
            rows = pairs[(pairs["setting"] == setting) & (pairs["order"] == order)]
            ax = axes[row, col]
            draw_panel(ax, transitions(rows, metric), colours, alpha, int(max_points), unit, metric)
            ax.set_title(common.order_title(setting, order))
    fig.suptitle(f"{metric} of each eval pair: after its own stage (x) vs after the next stage (y) · {method}")
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
