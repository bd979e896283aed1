"""Method comparison: where each method ends on every objective, and what it cost the first one.

One row of panels per setting. Left: each objective's final metric (after the last stage) per run, a
group of bars per (method, order) with the CI over pairs and seeds. Right: the first objective's
change from stage 1 to the last stage (its degradation; BWT for a sequential order, where the first
objective is the one trained at stage 1; for a joint method the first objective in config order,
trained together with the others from stage 1 on). Methods run in the registry's order
(:mod:`seqpref.methods`), in its colours; sequential orders sorted.

CLI: ``python -m seqpref.figures.method_comparison TRANSFER.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seqpref import methods
from seqpref.figures import common

METHOD_ORDER = tuple(methods.names())
METHOD_COLOURS = {name: m.colour for name, m in methods.REGISTRY.items()}


def run_order(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """The (method, order) runs of one setting, methods in :data:`METHOD_ORDER` (others after, sorted), orders sorted."""
    runs = rows[["method", "order"]].drop_duplicates()
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(map(tuple, runs.to_numpy()), key=lambda r: (rank.get(r[0], len(rank)), r[0], r[1]))


def run_label(method: str, order: str) -> str:
    """Tick label of a run: ``method`` and its order (``joint`` for a joint method)."""
    if method in methods.REGISTRY and methods.kind(method) == methods.JOINT:
        return f"{method}\njoint"
    return f"{method}\n{' → '.join(common.order_objectives(order))}"


def setting_values(rows: pd.DataFrame) -> dict:
    """The numbers of one setting's panels.

    Takes that setting's TRANSFER rows of one metric; returns ``runs`` ((method, order) list),
    ``objectives`` (sorted), ``final`` / ``final_lo`` / ``final_hi`` (arrays runs × objectives, NaN
    where missing) and ``first`` (first objective per run), ``degradation`` / ``_lo`` / ``_hi``
    (arrays per run: the first objective's bwt and its CI).
    """
    runs = run_order(rows)
    objectives = sorted(rows["objective"].unique())
    final = {k: np.full((len(runs), len(objectives)), np.nan) for k in ("final", "final_lo", "final_hi")}
    degradation = {k: np.full(len(runs), np.nan) for k in ("bwt", "bwt_lo", "bwt_hi")}
    first = []
    for i, (method, order) in enumerate(runs):
        run = rows[(rows["method"] == method) & (rows["order"] == order)].set_index("objective")
        for j, objective in enumerate(objectives):
            if objective in run.index:
                for key in final:
                    final[key][i, j] = run.at[objective, key]
        name = common.order_objectives(order)[0]
        first.append(name)
        if name in run.index:
            for key in degradation:
                degradation[key][i] = run.at[name, key]
    return {
        "runs": runs,
        "objectives": objectives,
        **final,
        "first": first,
        "degradation": degradation["bwt"],
        "degradation_lo": degradation["bwt_lo"],
        "degradation_hi": degradation["bwt_hi"],
    }


def draw_final(ax, values: dict, colours: dict) -> None:
    """Grouped bars on ``ax``: one group per run, one bar per objective (label = objective), CI error bars."""
    n_runs, n_objectives = len(values["runs"]), len(values["objectives"])
    width = 0.8 / max(n_objectives, 1)
    x = np.arange(n_runs)
    for j, objective in enumerate(values["objectives"]):
        v = values["final"][:, j]
        ax.bar(
            x + (j - (n_objectives - 1) / 2) * width,
            v,
            width=width,
            color=colours[objective],
            label=objective,
            yerr=common.error_bars(v, values["final_lo"][:, j], values["final_hi"][:, j]),
            capsize=2,
            zorder=2,
        )
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(x, [run_label(*run) for run in values["runs"]], fontsize=7)


def draw_degradation(ax, values: dict) -> None:
    """One bar per run: the first objective's change from stage 1 to the last stage, CI error bars,
    coloured by method; the objective's name is written under its bar's tick label."""
    x = np.arange(len(values["runs"]))
    v = values["degradation"]
    colours = [METHOD_COLOURS.get(method, "0.5") for method, _ in values["runs"]]
    ax.bar(
        x,
        v,
        width=0.6,
        color=colours,
        yerr=common.error_bars(v, values["degradation_lo"], values["degradation_hi"]),
        capsize=2,
        zorder=2,
    )
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(x, [f"{run_label(*run)}\n[{name}]" for run, name in zip(values["runs"], values["first"])], fontsize=7)


def draw(transfer: pd.DataFrame, metric: str = "reward_margin"):
    """Draw the method comparison of ``transfer`` (the TRANSFER table) for ``metric`` and return the Figure.

    One row per setting: the left panel has each run's final ``metric`` per objective (bars with the CI
    over pairs and seeds), the right panel the first objective's change from stage 1 to the last stage.
    """
    rows = transfer[transfer["metric"] == metric]
    if rows.empty:
        present = sorted(transfer["metric"].dropna().unique().tolist())
        raise ValueError(f"transfer: no rows of metric {metric!r}; metrics present: {present}")
    settings = sorted(rows["setting"].unique())
    n_runs = max(len(run_order(rows[rows["setting"] == s])) for s in settings)
    fig, axes = plt.subplots(
        len(settings),
        2,
        squeeze=False,
        constrained_layout=True,
        figsize=(2.0 + 2 * 1.1 * n_runs + 2, 1.2 + 2.8 * len(settings)),
        gridspec_kw={"width_ratios": [1.6, 1.0]},
    )
    colours = common.objective_colours(rows["objective"])
    unit = common.metric_unit(metric)
    for row, setting in enumerate(settings):
        values = setting_values(rows[rows["setting"] == setting])
        left, right = axes[row]
        draw_final(left, values, colours)
        left.set_title(f"{setting}: final {metric}")
        left.set_ylabel(f"{metric}" + (f" ({unit})" if unit else ""))
        left.legend(fontsize=7, title="objective", title_fontsize=7)
        draw_degradation(right, values)
        right.set_title(f"{setting}: first objective, stage 1 → last")
        right.set_ylabel(f"change in {metric}" + (f" ({unit})" if unit else ""))
    fig.suptitle(
        f"methods compared on {metric} · {common.seeds_note(rows)}; error bars: 95% CI\n"
        "[name] = the first objective: trained at stage 1 (sequential) or first in config order (joint)"
    )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
