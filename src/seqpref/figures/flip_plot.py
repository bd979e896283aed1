"""Flip plot: which individual eval pairs of the first objective change sign as later stages train.

Rows of panels are settings, columns are the setting's orders (sorted alphabetically). A panel shows the
objective trained at stage 1: one row per eval pair (and seed), sorted by the pair's margin after stage 1,
one column per stage 0..K, coloured by the sign of the metric (positive / zero / negative). A row whose
colour changes to the right of stage 1 is a pair that later training flipped, which a mean over pairs can
hide. The panel title counts the pairs whose sign after the last stage differs from after stage 1 (over
every pair; at most ``max_pairs`` rows are drawn, a fixed random subsample).

CLI: ``python -m seqpref.figures.flip_plot PAIRS.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch, Rectangle

from seqpref.figures import common

KEYS = ["seed", "pair_id"]
#: colour of sign −1, 0, +1 (red / grey / blue, as the transfer heatmap's RdBu); white = not scored
SIGN_COLOURS = ("#b2182b", "#d9d9d9", "#2166ac")
MISSING = "white"
SIGN_NORM = BoundaryNorm([-1.5, -0.5, 0.5, 1.5], 3)


def sign_cmap() -> ListedColormap:
    """The 3-colour map of signs −1 / 0 / +1 (used with :data:`SIGN_NORM`; masked cells are white)."""
    return ListedColormap(SIGN_COLOURS, name="sign").with_extremes(bad=MISSING)


def sign_matrix(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[int]]:
    """The first objective's metric per pair × stage, for one (setting, order).

    Takes that panel's pair-score rows and the metric column; returns a frame indexed by (seed, pair_id)
    (sorted) with one column per stage 0..K (NaN where a pair was not scored), and the stage list.
    Rows: the pairs of the objective trained at stage 1, for every seed.
    """
    first = common.order_objectives(rows["order"].iloc[0])[0]
    own = rows[rows["objective"] == first]
    stages = list(range(int(rows["stage"].max()) + 1))
    values = own.pivot_table(index=KEYS, columns="stage", values=metric, aggfunc="first", dropna=False)
    return values.reindex(columns=stages).sort_index(), stages


def flip_count(values: pd.DataFrame) -> tuple[int, int]:
    """Pairs whose sign after the last stage differs from after stage 1, and pairs with both values.

    Takes a :func:`sign_matrix` frame; a margin of exactly 0 is its own sign (as in the quartile table).
    """
    if values.shape[1] < 2:
        return 0, 0
    first, last = values[1], values[values.columns[-1]]
    both = first.notna() & last.notna()
    return int((np.sign(first[both]) != np.sign(last[both])).sum()), int(both.sum())


def subsample(values: pd.DataFrame, max_pairs: int) -> pd.DataFrame:
    """At most ``max_pairs`` rows of ``values``, chosen with ``numpy.random.default_rng(0)``, in their order."""
    if len(values) <= max_pairs:
        return values
    keep = np.sort(np.random.default_rng(0).choice(len(values), size=max_pairs, replace=False))
    return values.iloc[keep]


def shown_rows(values: pd.DataFrame, max_pairs: int) -> pd.DataFrame:
    """The rows a panel draws: a :func:`subsample` sorted by the stage-1 margin (ascending, stable)."""
    shown = subsample(values, max_pairs)
    if 1 not in shown.columns:
        return shown
    return shown.sort_values(1, kind="stable", na_position="first")


def stage_ticklabels(order: str, stages: list[int]) -> list[str]:
    """Column labels of a panel: ``0\\nbase`` then ``k\\nobjective trained at k``."""
    names = common.order_objectives(order)
    return ["0\nbase" if s == 0 else f"{s}\n{names[s - 1]}" if s <= len(names) else str(s) for s in stages]


def draw_panel(ax, values: pd.DataFrame, stages: list[int], order: str, max_pairs: int):
    """Draw one panel's sign image on ``ax``; returns the AxesImage (``get_array()`` = signs, pairs × stages).

    Row 0 (bottom) is the shown pair with the lowest stage-1 margin; stage 1's column is boxed.
    """
    shown = shown_rows(values, max_pairs)
    signs = np.ma.masked_invalid(np.sign(shown.to_numpy(dtype=float)))
    image = ax.imshow(signs, cmap=sign_cmap(), norm=SIGN_NORM, aspect="auto", interpolation="nearest", origin="lower")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks(range(len(stages)), stage_ticklabels(order, stages))
    ax.tick_params(length=0)
    if len(stages) > 1:
        ax.add_patch(Rectangle((0.5, -0.5), 1, len(shown), fill=False, edgecolor="black", linewidth=1.0))
    sampled = f"{len(shown)} of {len(values)}" if len(shown) < len(values) else f"all {len(values)}"
    ax.set_ylabel(f"eval pairs × seeds ({sampled}),\nsorted by stage-1 margin ↑")
    ax.set_yticks([])
    return image


def draw(pairs: pd.DataFrame, method: str | None = None, metric: str = "reward_margin", max_pairs: int = 300):
    """Draw the per-pair sign plot of ``pairs`` (the PAIR_SCORES table); returns the Figure.

    One panel per (setting row, order column) for ``method`` (None: :func:`common.default_method`): the eval
    pairs (per seed) of the objective
    trained at stage 1 as rows, sorted by ``metric`` after stage 1, and stages 0..K as columns, coloured
    by the sign of ``metric``. At most ``max_pairs`` rows per panel are drawn (deterministic subsample with
    ``numpy.random.default_rng(0)``); the title's count of pairs whose sign after the last stage differs
    from after stage 1 uses every pair.
    """
    common.check_pair_metric(pairs, metric)
    if int(max_pairs) < 1:
        raise ValueError(f"max_pairs must be ≥ 1, got {max_pairs}")
    pairs, method = common.select_method(pairs, method, "pairs")
    settings, orders = common.panel_grid(pairs)
    ncols = max(len(o) for o in orders.values())
    n_stages = int(pairs["stage"].max()) + 1
    fig, axes = plt.subplots(
        len(settings),
        ncols,
        squeeze=False,
        constrained_layout=True,
        figsize=(0.6 + ncols * (1.3 + 0.75 * n_stages), 1.0 + 3.3 * len(settings)),
    )
    common.remove_unused(fig, axes, orders, settings)
    for row, setting in enumerate(settings):
        for col, order in enumerate(orders[setting]):
            ax = axes[row, col]
            rows = pairs[(pairs["setting"] == setting) & (pairs["order"] == order)]
            values, stages = sign_matrix(rows, metric)
            draw_panel(ax, values, stages, order, int(max_pairs))
            flipped, n = flip_count(values)
            first = common.order_objectives(order)[0]
            share = f"{flipped / n:.0%}" if n else "–"
            ax.set_title(
                f"{common.order_title(setting, order)}\n{first}: {flipped} of {n} ({share}) "
                f"changed sign, stage 1 → {stages[-1]}",
                fontsize=8.5,
            )
            if common.is_bottom(orders, settings, row, col):
                ax.set_xlabel("stage (objective trained)")
    handles = [
        Patch(facecolor=SIGN_COLOURS[2], label=f"{metric} > 0"),
        Patch(facecolor=SIGN_COLOURS[1], label=f"{metric} = 0"),
        Patch(facecolor=SIGN_COLOURS[0], label=f"{metric} < 0"),
        Patch(facecolor="white", edgecolor="black", label="boxed: stage 1, where the objective was trained"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), handlelength=1.2)
    fig.suptitle(f"sign of {metric} of each eval pair of the first objective, by stage · {method}")
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
