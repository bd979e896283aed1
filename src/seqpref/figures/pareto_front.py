"""Pareto front: every run's final trade-off between a setting's two objectives, and the merge front.

One panel per two-objective setting. Each run's final point (mean reward margin on the first and the
second objective, config order) with its 95% CIs as error bars, in its method's colour; the merge
front's λ points joined by a line (λ = the first objective's share of the merged weight); points no
other point beats on both objectives ringed in black. The base model is the cross at the reference
point, and each method's hypervolume against it (:func:`seqpref.pareto.hypervolume`, nats²) is in
the legend.

CLI: ``python -m seqpref.figures.pareto_front PARETO.parquet STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from seqpref import pareto
from seqpref.figures import common
from seqpref.figures.method_comparison import METHOD_COLOURS, METHOD_ORDER


def draw(points: pd.DataFrame):
    """Draw the PARETO table's points, one panel per setting, and return the Figure."""
    if points.empty:
        raise ValueError("pareto: no points (does any setting have exactly two objectives?)")
    settings = sorted(points["setting"].unique())
    fig, axes = plt.subplots(
        1, len(settings), squeeze=False, constrained_layout=True, figsize=(0.6 + 3.6 * len(settings), 3.8)
    )
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    for ax, setting in zip(axes[0], settings):
        rows = points[points["setting"] == setting]
        reference = (rows["reference_x"].iloc[0], rows["reference_y"].iloc[0])
        ax.axvline(reference[0], color="0.75", linewidth=0.8, zorder=0)
        ax.axhline(reference[1], color="0.75", linewidth=0.8, zorder=0)
        ax.plot(*reference, marker="x", color="0.2", linestyle="none", label="base")
        for method in sorted(rows["method"].unique(), key=lambda m: (rank.get(m, len(rank)), m)):
            group = rows[rows["method"] == method]
            colour = METHOD_COLOURS.get(method, "0.5")
            volume = pareto.hypervolume(group["x"], group["y"], reference)
            label = f"{method} (HV {volume:.2f})"
            for kind, part in group.groupby(group["point"] == "final"):
                x, y = part["x"].to_numpy(), part["y"].to_numpy()
                xerr = common.error_bars(x, part["x_lo"], part["x_hi"])
                yerr = common.error_bars(y, part["y_lo"], part["y_hi"])
                marker = "o" if kind else "s"
                ax.errorbar(
                    x,
                    y,
                    xerr=xerr,
                    yerr=yerr,
                    fmt=marker,
                    color=colour,
                    markersize=5,
                    capsize=2,
                    elinewidth=0.8,
                    label=label,
                )
                label = None
                if not kind:  # the merge front, in λ order
                    line = part.sort_values("lam")
                    ax.plot(
                        line["x"],
                        line["y"],
                        color=colour,
                        linewidth=1,
                        alpha=0.8,
                        label=f"{method} front, λ {line['lam'].min():g}…{line['lam'].max():g}",
                    )
            best = group[~group["dominated"].astype(bool)]
            ax.scatter(best["x"], best["y"], s=90, facecolors="none", edgecolors="black", linewidths=1.1, zorder=3)
        ax.set_xlabel(f"{rows['objective_x'].iloc[0]}: reward margin (nats)")
        ax.set_ylabel(f"{rows['objective_y'].iloc[0]}: reward margin (nats)")
        ax.set_title(setting)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"final trade-off per run · {common.seeds_note(points)}; bars: 95% CI; ringed: non-dominated; "
        "HV: area beyond the base (nats²)"
    )
    return fig


if __name__ == "__main__":
    common.run_cli(draw)
