"""The trade-off between a setting's two objectives: every run's final point, the merge front, which
points another point is shown to beat, and the hypervolume each method dominates, with intervals.

A point is a model's mean ``reward_margin`` (nats, seeds and eval pairs pooled, an interval over seeds
and pairs: :func:`seqpref.stats.crossed_interval`) on the setting's first and second objective (config
order): the final stage of every run (one point per method and order) and each λ of the merge front
(``scores/<setting>/merge/<order>/seed<s>/front<i>.parquet``). A point is ``dominated`` only where
another is shown at least as good on both objectives and better on one (:func:`dominated_by_intervals`).
The reference point of the hypervolume is the base model (stage 0; 0 nats for reward_margin by
construction), so a method's hypervolume is the area of the region that its points improve on the base
in both objectives; a point that loses on either objective adds nothing. Methods have different numbers
of points (two orders, one joint run, a front): the table gives the union's hypervolume and that of the
method's best single point, each with an interval (:func:`hypervolume_interval`), and each final point
carries its run's budget (:mod:`seqpref.budget`). Settings with other than two objectives have no front.

``python -m seqpref.pareto PAIRS --front SCORES LAMBDA ... --objectives JSON --points OUT
--hypervolume OUT --options JSON [--training TRAINING]``
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


def point_matrix(rows: pd.DataFrame, objective: str, where: str) -> pd.DataFrame:
    """One objective's ``(seed × pair_id)`` frame of :data:`METRIC` from PAIR_SCORES ``rows`` of one point
    (seeds and pair ids sorted); a ``ValueError`` naming ``where`` when a pair is not scored for every seed."""
    wide = rows[rows["objective"] == objective].pivot(index="seed", columns="pair_id", values=METRIC).sort_index()
    if wide.empty or wide.isna().any().any():
        raise ValueError(f"{where}: some pairs of {objective} are not scored for every seed")
    return wide.sort_index(axis=1)


def _union_area(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    return hypervolume([p[0] for p in points], [p[1] for p in points], reference)


def hypervolume_interval(
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    reference: tuple[float, float],
    confidence: float,
    n_boot: int,
    seed: int,
) -> dict:
    """The hypervolume of points whose coordinates are the means of ``(n_seeds, n_pairs)`` tables (``xs[i]``
    on the first objective, ``ys[i]`` on the second; every table of an objective scores the same pairs, in
    the same column order, for the same seeds), with an interval over seeds and pairs.

    Like :func:`seqpref.stats.crossed_interval`, two independent sources of error are added in quadrature:
    the seeds' (Student's t with S − 1 df over the S per-seed hypervolumes, each from one seed's row of
    every table) and the shared eval pairs' (``n_boot`` pair bootstrap resamples of the seed-mean tables,
    each objective's pairs resampled apart, the same resample for every point; its standard deviation times
    Student's t with P − 1 df, P the fewer pairs of the two objectives). The per-seed spread also holds some
    pair-by-seed noise that the bootstrap counts again, so the interval errs wide. With one seed it covers
    pairs only. The hypervolume is not smooth where a point crosses the reference or another point's
    front: there the interval is approximate (benchmarks/calibration.py measures it).

    Returns ``hypervolume`` (units of x × units of y), ``lo`` (at least 0, as the area), ``hi`` and
    ``covers`` (words)."""
    n_seeds = xs[0].shape[0]
    estimate = _union_area([(x.mean(), y.mean()) for x, y in zip(xs, ys)], reference)
    rng = np.random.default_rng([seed, 0x48A])
    mean_x, mean_y = np.stack([x.mean(axis=0) for x in xs]), np.stack([y.mean(axis=0) for y in ys])  # (points, P)
    px, py = mean_x.shape[1], mean_y.shape[1]
    draws = np.empty(n_boot)
    for b in range(n_boot):
        ix, iy = rng.integers(0, px, px), rng.integers(0, py, py)
        draws[b] = _union_area(list(zip(mean_x[:, ix].mean(axis=1), mean_y[:, iy].mean(axis=1))), reference)
    variance = (stats.t_quantile(confidence, min(px, py) - 1) * draws.std(ddof=1)) ** 2
    if n_seeds > 1:
        per_seed = [
            _union_area([(x[s].mean(), y[s].mean()) for x, y in zip(xs, ys)], reference) for s in range(n_seeds)
        ]
        variance += stats.t_quantile(confidence, n_seeds - 1) ** 2 * np.var(per_seed, ddof=1) / n_seeds
    half = float(np.sqrt(variance))
    return {
        "hypervolume": estimate,
        "lo": max(estimate - half, 0.0),
        "hi": estimate + half,
        "covers": stats.covers(n_seeds),
    }


def dominated_by_intervals(xs: list[np.ndarray], ys: list[np.ndarray], confidence: float) -> np.ndarray:
    """Which points another point is shown to dominate: bool ``(n,)``. Point j dominates point i when, on
    both objectives, j's mean is at least i's, and on one of them the interval of the difference j − i
    (:func:`seqpref.stats.crossed_interval` of the pair-by-pair difference, seeds matched by label:
    :func:`setting_points` gives every point the same seeds, in order) lies above 0. Tables as
    :func:`hypervolume_interval`'s. No correction for the many comparisons is made: a point is
    ``dominated`` when any one comparison shows it."""
    n = len(xs)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            diffs = [stats.crossed_interval(a[j] - a[i], confidence) for a in (xs, ys)]
            if all(d["mean"] >= 0 for d in diffs) and any(d["lo"] > 0 for d in diffs):
                out[i] = True
                break
    return out


def setting_points(pairs: pd.DataFrame, front: pd.DataFrame | None, objectives: list[str]):
    """The points of one setting: ``(keys, xs, ys, reference)`` — ``keys`` a frame (method, order, point,
    lam, n_seeds) with one row per run's final stage and per merge front λ; ``xs``/``ys`` their
    ``(n_seeds, n_pairs)`` tables on the two ``objectives``; ``reference`` the base model's (stage 0) means.
    ``pairs`` and ``front`` are PAIR_SCORES frames of the setting (``front`` with a ``lam`` column)."""
    keys, xs, ys = [], [], []
    last = pairs[pairs["stage"] == pairs.groupby(["method", "order"])["stage"].transform("max")]
    groups = [
        ((method, order, "final", np.nan), rows)
        for (method, order), rows in last.groupby(["method", "order"], sort=True)
    ]
    if front is not None and len(front):
        groups += [
            ((method, order, f"lambda={lam:g}", float(lam)), rows)
            for (method, order, lam), rows in front.groupby(["method", "order", "lam"], sort=True)
        ]
    pair_ids = seeds = None
    for (method, order, point, lam), rows in groups:
        where = f"{rows['setting'].iloc[0]} {method}/{order} {point}"
        tables_ = [point_matrix(rows, objective, where) for objective in objectives]
        ids = [list(t.columns) for t in tables_]
        if pair_ids is not None and ids != pair_ids:
            raise ValueError(f"{where}: scored other eval pairs than the setting's other runs")
        labels = [list(t.index) for t in tables_]
        if labels[0] != labels[1] or (seeds is not None and labels[0] != seeds):
            raise ValueError(
                f"{where}: seeds {labels[0]}, the setting's other points {seeds}: every point needs "
                "the same seeds (its intervals pair them)"
            )
        pair_ids, seeds = ids, labels[0]
        keys.append({"method": method, "order": order, "point": point, "lam": lam, "n_seeds": len(tables_[0])})
        xs.append(tables_[0].to_numpy())
        ys.append(tables_[1].to_numpy())
    base = pairs[pairs["stage"] == 0]
    reference = tuple(float(base[base["objective"] == o][METRIC].mean()) for o in objectives)
    return pd.DataFrame(keys), xs, ys, reference


def pareto_tables(
    pairs: pd.DataFrame,
    front: pd.DataFrame | None,
    names: dict[str, list[str]],
    options,
    training: pd.DataFrame | None = None,
):
    """``(points, hypervolumes)`` of every two-objective setting in ``names`` (setting → its objectives,
    config order), from the pair scores ``pairs`` (PAIR_SCORES of every run and stage) and the merge front's
    ``front`` (with ``lam``; or None).

    A point is a run's final stage, or a front λ, with :func:`seqpref.stats.crossed_interval` on each
    objective; ``dominated`` by :func:`dominated_by_intervals` (``dominated_by_means``: by the means alone,
    :func:`dominated`); the run's budget through its final stage from ``training``
    (:func:`seqpref.budget.run_budgets`; empty for the front). Per (setting, method): the hypervolume of its
    points against the base model with :func:`hypervolume_interval`, and that of its best single point (the
    largest area one run reaches: comparable across methods with different numbers of points)."""
    from seqpref import budget

    spent = budget.run_budgets(training) if training is not None else None
    points, volumes = [], []
    for setting, objectives in names.items():
        if len(objectives) != 2 or not (pairs["setting"] == setting).any():
            continue
        setting_front = None if front is None or front.empty else front[front["setting"] == setting]
        keys, xs, ys, reference = setting_points(pairs[pairs["setting"] == setting], setting_front, objectives)
        frame = keys.assign(
            setting=setting,
            objective_x=objectives[0],
            objective_y=objectives[1],
            metric=METRIC,
            reference_x=reference[0],
            reference_y=reference[1],
        )
        for axis, tables_ in (("x", xs), ("y", ys)):
            cis = [stats.crossed_interval(t, options.confidence) for t in tables_]
            frame[axis], frame[f"{axis}_lo"], frame[f"{axis}_hi"] = ([c[k] for c in cis] for k in ("mean", "lo", "hi"))
        frame["interval_covers"] = [stats.covers(n) for n in frame["n_seeds"]]
        frame["dominated_by_means"] = dominated(frame["x"], frame["y"])
        frame["dominated"] = dominated_by_intervals(xs, ys, options.confidence)
        totals = [f"{column}_total" for column in budget.METRICS]
        frame[totals] = np.nan
        if spent is not None and len(spent):
            final_stage = pairs[pairs["setting"] == setting].groupby(["method", "order"])["stage"].max()
            for i, row in frame[frame["point"] == "final"].iterrows():
                match = spent[
                    (spent.setting == setting)
                    & (spent.method == row["method"])
                    & (spent.order == row["order"])
                    & (spent.stage == final_stage[(row["method"], row["order"])])
                ]
                if len(match):
                    frame.loc[i, totals] = match[totals].iloc[0].to_numpy(dtype=float)
        points.append(frame)
        for method, group in frame.groupby("method", sort=True):
            index = list(group.index)
            members = ([xs[i] for i in index], [ys[i] for i in index])
            seeds = {xs[i].shape[0] for i in index}
            if len(seeds) != 1:
                raise ValueError(f"{setting} {method}: its points have different numbers of seeds {sorted(seeds)}")
            union = hypervolume_interval(*members, reference, options.confidence, options.n_boot, options.seed)
            singles = [
                hypervolume_interval([xs[i]], [ys[i]], reference, options.confidence, options.n_boot, options.seed)
                for i in index
            ]
            best = max(singles, key=lambda v: v["hypervolume"])
            volumes.append(
                {
                    "setting": setting,
                    "method": method,
                    "objective_x": objectives[0],
                    "objective_y": objectives[1],
                    "metric": METRIC,
                    "n_points": len(group),
                    "n_nondominated": int((~group["dominated"]).sum()),
                    "n_seeds": seeds.pop(),
                    "reference_x": reference[0],
                    "reference_y": reference[1],
                    "hypervolume": union["hypervolume"],
                    "hypervolume_lo": union["lo"],
                    "hypervolume_hi": union["hi"],
                    "best_point_hypervolume": best["hypervolume"],
                    "best_point_hypervolume_lo": best["lo"],
                    "best_point_hypervolume_hi": best["hi"],
                    "interval_covers": union["covers"],
                }
            )
    points = pd.concat(points, ignore_index=True) if points else pd.DataFrame(columns=tables.PARETO.names)
    return points, pd.DataFrame(volumes, columns=tables.HYPERVOLUME.names)


def main(argv=None) -> None:
    """CLI: the ``pareto`` rule."""
    from seqpref.options import LabelOptions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", help="tables/pairs.parquet: every run's pair scores")
    parser.add_argument(
        "--front",
        nargs=2,
        action="append",
        default=[],
        metavar=("SCORES", "LAMBDA"),
        help="a merge front point's score file and its λ",
    )
    parser.add_argument("--objectives", required=True, help="JSON: setting -> its objectives in config order")
    parser.add_argument("--points", required=True, help="pareto table to write")
    parser.add_argument("--hypervolume", required=True, help="hypervolume table to write")
    parser.add_argument("--options", default="{}", help="JSON of LabelOptions (n_boot, confidence, seed)")
    parser.add_argument("--training", default=None, help="tables/training.parquet: the runs' budgets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = LabelOptions(**json.loads(args.options))
    front = None
    if args.front:
        front = pd.concat([pd.read_parquet(path).assign(lam=float(lam)) for path, lam in args.front], ignore_index=True)
    names = json.loads(args.objectives)
    pairs = pd.read_parquet(
        args.pairs, filters=[("setting", "in", [s for s, o in names.items() if len(o) == 2] or [""])]
    )
    training = pd.read_parquet(args.training) if args.training else None
    points, volumes = pareto_tables(pairs, front, names, options, training)
    record = provenance.provenance("pareto", {"front": len(args.front), "options": json.loads(args.options)})
    tables.write_table(points, args.points, tables.PARETO, record)
    tables.write_table(volumes, args.hypervolume, tables.HYPERVOLUME, record)
    log.info(
        "%d points (%d non-dominated), %d hypervolumes",
        len(points),
        int((~points["dominated"].astype(bool)).sum()),
        len(volumes),
    )


if __name__ == "__main__":
    main()
