"""Transfer heatmap: one summary metric of every objective after every stage, one panel per run order.

Rows of panels are settings, columns are the setting's orders (sorted alphabetically). Each panel is an
objective × stage grid of the metric (seeds pooled), on one diverging colour scale centred on 0 and
shared by every panel. The cell of the objective trained at that stage is boxed; with a change metric
the cells carry the summary's label as a marker (▼ degradation, ▲ positive transfer, ◆ redistribution).

CLI: ``python -m seqpref.figures.transfer_heatmap SUMMARY.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

from collections import Counter

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from seqpref.figures import common

BLANK = "#d9d9d9"  # cells without a value (the change at stage 0)


def consensus_label(labels) -> str | None:
    """The label that more than half of a cell's rows give it, else None (also for no labels); a
    pooled summary has one row per cell, so this is its label."""
    present = [label for label in labels if isinstance(label, str)]
    if not present:
        return None
    label, count = Counter(present).most_common(1)[0]
    return label if count * 2 > len(present) else None


def panel_objectives(order: str, present) -> list[str]:
    """Row order of a panel: the order's objectives in training order, then any other present ones sorted."""
    trained = common.order_objectives(order)
    return [o for o in trained if o in set(present)] + sorted(set(present) - set(trained))


def panel_cells(rows: pd.DataFrame, metric: str) -> dict:
    """The cells of one (setting, order) panel.

    Takes that panel's summary rows (seeds pooled) and the metric column; returns a dict with
    ``objectives`` (row names), ``stages`` (column stages 0..K), ``values`` (float array objectives ×
    stages, NaN where missing), ``labels`` (object array of consensus labels or None), ``trained``
    (bool array: the objective trained at that stage) and ``shares`` (the change as a share of the
    objective's own-stage gain, NaN where the summary has none).
    """
    order = rows["order"].iloc[0]
    objectives = panel_objectives(order, rows["objective"].unique())
    stages = list(range(int(rows["stage"].max()) + 1))
    grouped = rows.groupby(["objective", "stage"])
    means = grouped[metric].mean()
    labels = grouped["label"].agg(consensus_label)
    shares_of = grouped["share_of_own_gain"].mean() if "share_of_own_gain" in rows else None
    shape = (len(objectives), len(stages))
    values = np.full(shape, np.nan)
    shares = np.full(shape, np.nan)
    cell_labels = np.full(shape, None, dtype=object)
    trained = np.zeros(shape, dtype=bool)
    stage_objectives = common.order_objectives(order)
    for i, objective in enumerate(objectives):
        for j, stage in enumerate(stages):
            if (objective, stage) in means.index:
                values[i, j] = means[(objective, stage)]
                cell_labels[i, j] = labels[(objective, stage)]
                if shares_of is not None:
                    shares[i, j] = shares_of[(objective, stage)]
            trained[i, j] = 0 < stage <= len(stage_objectives) and stage_objectives[stage - 1] == objective
    return {
        "objectives": objectives,
        "stages": stages,
        "values": values,
        "labels": cell_labels,
        "trained": trained,
        "shares": shares,
    }


def stage_ticklabels(order: str, stages: list[int]) -> list[str]:
    """Column labels of a panel: ``0\\nbase`` then ``k\\nobjective trained at k``."""
    names = common.order_objectives(order)
    return ["0\nbase" if s == 0 else f"{s}\n{names[s - 1]}" if s <= len(names) else str(s) for s in stages]


def symmetric_limit(panels: list[dict]) -> float:
    """Largest |value| over all panels (the colour scale is ±this); 1 when there is no non-zero value."""
    finite = [np.nanmax(np.abs(p["values"])) for p in panels if np.isfinite(p["values"]).any()]
    limit = max(finite, default=0.0)
    return float(limit) if limit > 0 else 1.0


def cell_text(value: float, label, metric: str, mark: bool, share: float = float("nan")) -> str:
    """Annotation of one cell: the value (signed for change metrics), the label's marker if ``mark``,
    and below it the change as a share of the objective's own-stage gain when ``mark`` and it is known."""
    text = f"{value:+.2f}" if common.is_change_metric(metric) else f"{value:.2f}"
    marker = common.LABEL_MARKERS.get(label, "") if mark and label else ""
    below = f"\n{share:+.0%} of own" if mark and np.isfinite(share) else ""
    return f"{text}{marker}{below}"


def draw_panel(ax, panel: dict, order: str, title: str, cmap, norm, metric: str, annotate: bool):
    """Draw one panel's heatmap on ``ax``; returns the AxesImage (values in ``get_array()``, rows × stages)."""
    values = np.ma.masked_invalid(panel["values"])
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks(range(len(panel["stages"])), stage_ticklabels(order, panel["stages"]))
    ax.set_yticks(range(len(panel["objectives"])), panel["objectives"])
    ax.tick_params(length=0)
    ax.set_title(title)
    mark = common.is_change_metric(metric)
    for (i, j), value in np.ndenumerate(panel["values"]):
        if panel["trained"][i, j]:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        if annotate and np.isfinite(value):
            red, green, blue, _ = cmap(norm(value))
            colour = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
            text = cell_text(value, panel["labels"][i, j], metric, mark, panel["shares"][i, j])
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    return image


def draw(
    summary: pd.DataFrame,
    metric: str = "reward_margin_change",
    method: str | None = None,
    cmap: str = "RdBu",
    annotate: bool = True,
):
    """Draw the transfer heatmap of ``summary`` (the SUMMARY table) and return the Figure.

    One panel per (setting row, order column); each is objective × stage of ``metric`` averaged over
    seeds for ``method`` (None: :func:`common.default_method`), on a colour scale symmetric around 0 shared by
    all panels. ``annotate`` writes
    each value (and, for ``*_change`` metrics, the label marker) in its cell.
    """
    if metric not in summary.columns or not pd.api.types.is_numeric_dtype(summary[metric]):
        numeric = [c for c in summary.columns if pd.api.types.is_numeric_dtype(summary[c])]
        raise ValueError(f"metric {metric!r} is not a numeric summary column; choose one of {numeric}")
    summary, method = common.select_method(summary, method, "summary")
    settings, orders = common.panel_grid(summary)
    panels = {
        (setting, order): panel_cells(summary[(summary["setting"] == setting) & (summary["order"] == order)], metric)
        for setting in settings
        for order in orders[setting]
    }
    limit = symmetric_limit(list(panels.values()))
    norm = Normalize(vmin=-limit, vmax=limit)
    colours = matplotlib.colormaps[cmap].with_extremes(bad=BLANK)

    ncols = max(len(o) for o in orders.values())
    n_stages = max(len(p["stages"]) for p in panels.values())
    n_objectives = max(len(p["objectives"]) for p in panels.values())
    size = (0.6 + ncols * (1.0 + 0.85 * n_stages) + 1.0, 0.8 + len(settings) * (1.0 + 0.45 * n_objectives))
    fig, axes = plt.subplots(len(settings), ncols, squeeze=False, constrained_layout=True, figsize=size)
    common.remove_unused(fig, axes, orders, settings)
    image = None
    for row, setting in enumerate(settings):
        for col, order in enumerate(orders[setting]):
            title = common.order_title(setting, order)
            image = draw_panel(axes[row, col], panels[(setting, order)], order, title, colours, norm, metric, annotate)
            if common.is_bottom(orders, settings, row, col):
                axes[row, col].set_xlabel("stage (objective trained)")
    bar = fig.colorbar(image, ax=list(fig.axes), shrink=min(1.0, 0.5 + 0.25 * len(settings)), extend="neither")
    bar.set_label(common.metric_label(metric))
    fig.suptitle(f"{metric} by stage · {method} · {common.seeds_note(summary)}")
    if annotate and common.is_change_metric(metric):
        label_metric = consensus_label(summary["label_metric"]) if "label_metric" in summary else None
        on = f" of the {label_metric} change" if label_metric else ""
        fig.supxlabel(
            f"▼ degradation   ▲ positive transfer   ◆ redistribution   (labels{on}, from the CI over pairs and seeds)\n"
            "boxed: objective trained at that stage   ·   grey: no change at the base (stage 0)   ·   "
            "% of own: the change as a share of what the objective gained in its own stage",
            fontsize=7.5,
        )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
