"""Adapter movement: how far each stage moves the effective LoRA update, and in which direction.

Rows of panels are settings, columns are the setting's orders (sorted alphabetically). In a panel, each
stage k has a bar of ‖ΔW_k − ΔW_{k−1}‖_F (what stage k changed; ΔW = (α/r)·B·A summed over every LoRA
module, module ``all``) and a marker of ‖ΔW_k‖_F (the whole adapter after stage k), both averaged over
seeds; above the bars of stages ≥ 2 is the cosine between stage k's update and stage k−1's (seed mean).

CLI: ``python -m seqpref.figures.adapter_movement MOVEMENT.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref.figures import common

MODULE = "all"
VALUES = ["update_norm", "total_norm", "cosine_previous"]
BAR_COLOUR = "#56B4E9"
LINE_COLOUR = "#000000"


def panel_values(rows: pd.DataFrame) -> pd.DataFrame:
    """Seed means of one (setting, order) panel.

    Takes that panel's movement rows of module ``all`` (any number of seeds); returns a frame indexed by
    stage (sorted) with the seed means of ``update_norm``, ``total_norm`` and ``cosine_previous`` (NaN
    where every seed has NaN, e.g. at stage 1), and with several seeds ``update_min`` / ``update_max``,
    the range of ``update_norm`` across them.
    """
    grouped = rows.groupby("stage")
    values = grouped[VALUES].mean()
    if rows["seed"].nunique() > 1:
        values["update_min"], values["update_max"] = grouped["update_norm"].min(), grouped["update_norm"].max()
    return values.sort_index()


def stage_ticklabels(order: str, stages) -> list[str]:
    """Bar labels of a panel: ``k\\nobjective trained at k``."""
    names = common.order_objectives(order)
    return [f"{s}\n{names[s - 1]}" if 1 <= s <= len(names) else str(s) for s in stages]


def draw_panel(ax, values: pd.DataFrame, order: str) -> None:
    """Draw one panel on ``ax``: update-norm bars (label ``update``), total-norm markers (label ``total``)
    and ``cos = …`` texts above the bars of stages ≥ 2."""
    stages = [int(s) for s in values.index]
    update = values["update_norm"].to_numpy(dtype=float)
    total = values["total_norm"].to_numpy(dtype=float)
    spread = None
    if {"update_min", "update_max"} <= set(values.columns):  # the range across seeds, as error bars
        spread = np.vstack(
            [update - values["update_min"].to_numpy(float), values["update_max"].to_numpy(float) - update]
        )
    ax.bar(
        stages,
        update,
        width=0.6,
        color=BAR_COLOUR,
        zorder=2,
        yerr=spread,
        capsize=3,
        label="‖ΔW_k − ΔW_(k−1)‖_F: what stage k changed",
    )
    ax.plot(
        stages,
        total,
        color=LINE_COLOUR,
        marker="o",
        markersize=5,
        linewidth=1.0,
        zorder=3,
        label="‖ΔW_k‖_F: the adapter after stage k",
    )
    for stage, height, whole, cosine in zip(stages, update, total, values["cosine_previous"]):
        if stage >= 2 and np.isfinite(cosine):
            top = np.nanmax([height, whole])
            ax.annotate(
                f"cos = {cosine:.2f}",
                (stage, top),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7.5,
                color="0.2",
            )
    ax.set_xticks(stages, stage_ticklabels(order, stages))
    ax.set_xlim(min(stages) - 0.6, max(stages) + 0.6)
    ax.tick_params(axis="x", length=0)
    ax.grid(False, axis="x")
    ax.margins(y=0.18)


def draw(movement: pd.DataFrame, method: str | None = None):
    """Draw the adapter movement of ``movement`` (the MOVEMENT table) and return the Figure.

    One panel per (setting row, order column) for ``method`` (None: :func:`common.default_method`), from the
    rows of module ``all``: a bar of
    the seed-mean ``update_norm`` per stage, a marker line of the seed-mean ``total_norm``, and for
    stages ≥ 2 the seed-mean ``cosine_previous`` written above the bar. The y-axis is shared.
    """
    movement, method = common.select_method(movement, method, "movement")
    rows = movement[movement["module"] == MODULE]
    if rows.empty:
        raise ValueError(f"movement: no rows with module {MODULE!r} (the whole-adapter norms)")
    settings, orders = common.panel_grid(rows)
    ncols = max(len(o) for o in orders.values())
    n_stages = int(rows["stage"].nunique())
    fig, axes = plt.subplots(
        len(settings),
        ncols,
        squeeze=False,
        sharey=True,
        constrained_layout=True,
        figsize=(0.8 + ncols * (1.4 + 0.9 * n_stages), 1.0 + 2.7 * len(settings)),
    )
    common.remove_unused(fig, axes, orders, settings)
    for row, setting in enumerate(settings):
        for col, order in enumerate(orders[setting]):
            ax = axes[row, col]
            panel = rows[(rows["setting"] == setting) & (rows["order"] == order)]
            draw_panel(ax, panel_values(panel), order)
            ax.set_title(common.order_title(setting, order))
            if col == 0:
                ax.set_ylabel("Frobenius norm of ΔW")
            if common.is_bottom(orders, settings, row, col):
                ax.set_xlabel("stage (objective trained)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=len(handles),
        title="ΔW = (α/r)·B·A over every LoRA module · cos = cosine of stage k's update with stage k−1's",
        title_fontsize=7.5,
    )
    note = common.seeds_note(rows).replace("band", "error bars")
    fig.suptitle(f"adapter movement per stage · {method} · {note}")
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
