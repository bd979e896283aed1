"""The trade-off between a setting's two objectives: every run's final point, the merge front, which
points no other point beats on both objectives, and the hypervolume each method dominates.

A point is a model's mean ``reward_margin`` (nats, seeds and eval pairs pooled, bootstrap CI) on the
setting's first and second objective (config order): the final stage of every run, and each λ of the
merge front (``scores/<setting>/merge/<order>/seed<s>/front<i>.parquet``). The reference point of the
hypervolume is the base model (stage 0; 0 nats for reward_margin by construction), so a method's
hypervolume is the area of the region that its points improve on the base in both objectives; a point
that loses on either objective adds nothing. Settings with other than two objectives have no front.

``python -m seqpref.pareto SUMMARY --front SCORES LAMBDA ... --objectives JSON --points OUT
--hypervolume OUT --options JSON``
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pandas as pd

from seqpref import provenance, stats, tables

log = logging.getLogger("seqpref.pareto")

METRIC = "reward_margin"


def dominated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For points ``(x_i, y_i)`` (both to be maximised), whether another point is at least as good on
    both and better on one: bool ``(n,)``. Equal points do not dominate each other."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    at_least = (x[None, :] >= x[:, None]) & (y[None, :] >= y[:, None])
    better = (x[None, :] > x[:, None]) | (y[None, :] > y[:, None])
    return (at_least & better).any(axis=1)


def hypervolume(x, y, reference: tuple[float, float]) -> float:
    """Area of the region dominated by the points ``(x_i, y_i)`` and dominating ``reference`` (both
    objectives maximised; units of x × units of y). Points not better than the reference on both
    objectives add nothing; 0.0 when none is."""
    rx, ry = reference
    points = sorted(((float(a), float(b)) for a, b in zip(x, y) if a > rx and b > ry), reverse=True)
    area, top = 0.0, ry
    for a, b in points:  # x descending: each point adds the strip above the best y so far
        if b > top:
            area += (a - rx) * (b - top)
            top = b
    return area


def front_points(front: pd.DataFrame, names: dict[str, list[str]], options) -> pd.DataFrame:
    """One point per (setting, run, front file) of the merge front's pair scores ``front`` (PAIR_SCORES
    rows with a ``lam`` column, the λ of their front point): the pooled mean
    and bootstrap CI (pairs and seeds, ``options``: LabelOptions' n_boot, confidence, seed) on each of
    the two objectives ``names[setting]``."""
    rows = []
    for (setting, method, order, lam), group in front.groupby(["setting", "method", "order", "lam"]):
        row = {"setting": setting, "method": method, "order": order, "lam": lam,
               "point": f"lambda={lam:g}", "n_seeds": group["seed"].nunique()}
        for axis, objective in zip(("x", "y"), names[setting]):
            wide = group[group["objective"] == objective].pivot(index="pair_id", columns="seed", values=METRIC)
            if wide.isna().any().any():
                raise ValueError(f"{setting} λ={lam}: some pairs of {objective} are not scored for every seed")
            values = wide.to_numpy().T[:, :, None]  # (n_seeds, n_pairs, 1)
            resampler = stats.Resampler.draw(values.shape[1], options.n_boot, options.seed, values.shape[0])
            lo, hi = stats.percentile_ci(resampler.means(values)[:, 0], options.confidence)
            row.update({axis: float(values.mean()), f"{axis}_lo": float(lo), f"{axis}_hi": float(hi)})
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_tables(summary: pd.DataFrame, front: pd.DataFrame | None, names: dict[str, list[str]], options):
    """``(points, hypervolumes)`` of every two-objective setting in ``names`` (setting → its objectives,
    config order): the final stage of every run in ``summary`` and the merge front's points, marked
    ``dominated`` within the setting; and per (setting, method) the hypervolume of its points against
    the base model (stage 0)."""
    points, volumes = [], []
    for setting, objectives in names.items():
        if len(objectives) != 2:
            continue
        rows = summary[summary["setting"] == setting]
        if rows.empty:
            continue
        base = rows[rows["stage"] == 0].groupby("objective")[METRIC].mean()
        last = rows[rows["stage"] == rows.groupby(["method", "order"])["stage"].transform("max")]
        finals = []
        for (method, order), run in last.groupby(["method", "order"], sort=False):
            by = run.set_index("objective")
            finals.append({"setting": setting, "method": method, "order": order, "lam": np.nan, "point": "final",
                           "n_seeds": int(by["n_seeds"].iloc[0]),
                           **{f"{axis}{suffix}": float(by.loc[objective, f"{METRIC}{suffix}"])
                              for axis, objective in zip(("x", "y"), objectives) for suffix in ("", "_lo", "_hi")}})
        frame = pd.DataFrame(finals)
        if front is not None and not front.empty and (front["setting"] == setting).any():
            frame = pd.concat([frame, front_points(front[front["setting"] == setting], {setting: objectives}, options)],
                              ignore_index=True)
        frame["objective_x"], frame["objective_y"] = objectives
        frame["metric"] = METRIC
        frame["reference_x"], frame["reference_y"] = float(base[objectives[0]]), float(base[objectives[1]])
        frame["dominated"] = dominated(frame["x"], frame["y"])
        points.append(frame)
        for method, group in frame.groupby("method", sort=False):
            volumes.append({"setting": setting, "method": method, "objective_x": objectives[0],
                            "objective_y": objectives[1], "metric": METRIC, "n_points": len(group),
                            "n_nondominated": int((~group["dominated"]).sum()),
                            "reference_x": frame["reference_x"].iloc[0], "reference_y": frame["reference_y"].iloc[0],
                            "hypervolume": hypervolume(group["x"], group["y"], (frame["reference_x"].iloc[0],
                                                                                 frame["reference_y"].iloc[0]))})
    points = pd.concat(points, ignore_index=True) if points else pd.DataFrame(columns=tables.PARETO.names)
    return points, pd.DataFrame(volumes, columns=tables.HYPERVOLUME.names)


def main(argv=None) -> None:
    """CLI: the ``pareto`` rule."""
    from seqpref.aggregate import LabelOptions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summary", help="tables/summary.parquet")
    parser.add_argument("--front", nargs=2, action="append", default=[], metavar=("SCORES", "LAMBDA"),
                        help="a merge front point's score file and its λ")
    parser.add_argument("--objectives", required=True, help="JSON: setting -> its objectives in config order")
    parser.add_argument("--points", required=True, help="pareto table to write")
    parser.add_argument("--hypervolume", required=True, help="hypervolume table to write")
    parser.add_argument("--options", default="{}", help="JSON of LabelOptions (n_boot, confidence, seed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = LabelOptions(**json.loads(args.options))
    front = None
    if args.front:
        front = pd.concat([pd.read_parquet(path).assign(lam=float(lam)) for path, lam in args.front], ignore_index=True)
    points, volumes = pareto_tables(pd.read_parquet(args.summary), front, json.loads(args.objectives), options)
    record = provenance.provenance("pareto", {"front": len(args.front), "options": json.loads(args.options)})
    tables.write_table(points, args.points, tables.PARETO, record)
    tables.write_table(volumes, args.hypervolume, tables.HYPERVOLUME, record)
    log.info("%d points (%d non-dominated), %d hypervolumes", len(points), int((~points["dominated"].astype(bool)).sum()),
             len(volumes))


if __name__ == "__main__":
    main()
