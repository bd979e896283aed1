"""Coverage of seqpref's intervals and false-label rate of its labels, on simulated pair x seed data.

A change measured on P held-out pairs by S seeds is simulated as
    x[s, p] = mu + a_s + b_p + e_sp,   a_s ~ N(0, sd_seed), b_p ~ N(0, sd_pair), e_sp ~ N(0, sd_noise)
with known mu. ``ratio`` = sd_seed / (the standard error of one seed's mean over pairs), the quantity
that decides whether seed-to-seed spread or pair-level error dominates. For every case the script runs
the tool's own functions on each draw: the interval (``crossed``: :func:`seqpref.stats.crossed_interval`,
what the tables print; ``bootstrap``: the pooled two-level percentile bootstrap the tables printed
before, :func:`seqpref.stats.paired_stage_ci`), and the label (:func:`seqpref.aggregate.change_label`
at the default label options), and prints

    seeds=N interval=NAME ratio=R coverage=0.xxx false_label=0.xxx

``coverage``: share of draws whose interval contains mu (mu = 0.3 nats); for ``fieller`` (the share of
own gain, a ratio), among the draws where the share is reported (its Fieller set is bounded). ``false_label``: share of draws
under the null (mu = 0) labelled anything but ``stable``; for ``redistribution`` the null also has no
pair effect (sd_pair = 0), since pairs that truly move both ways are redistribution. Share of own gain
(a ratio) is checked the same way with Fieller's interval (``interval=fieller``), and a method's
hypervolume (two points, A = (1.0, 0.3) and B = (0.4, 1.2) nats, each coordinate a table drawn as above
with the pair effects shared by both points: ``interval=hypervolume``,
:func:`seqpref.pareto.hypervolume_interval`, true value 0.66 nats²).

    python benchmarks/calibration.py            # the full grid (a few minutes on 2 cores)
    python benchmarks/calibration.py --quick    # fewer draws, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from seqpref import aggregate, pareto, stats
from seqpref.options import LabelOptions

N_PAIRS = 100
SD_PAIR = 0.5  # nats: pair-to-pair spread of the true change
SD_NOISE = 0.5  # nats: a pair's change from run to run (training noise)
MU = 0.3  # the true change where coverage is measured
RATIOS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
SEEDS = (1, 2, 3, 5)


def draw(rng, n_seeds: int, ratio: float, mu: float, sd_pair: float = SD_PAIR, reps: int = 1) -> np.ndarray:
    """``reps`` simulated ``(n_seeds, N_PAIRS)`` change tables: shape ``(reps, n_seeds, N_PAIRS)``."""
    pair_se = np.sqrt((sd_pair**2 + SD_NOISE**2) / N_PAIRS)
    seed = rng.normal(0.0, ratio * pair_se, size=(reps, n_seeds, 1))
    pair = rng.normal(0.0, sd_pair, size=(reps, 1, N_PAIRS))
    noise = rng.normal(0.0, SD_NOISE, size=(reps, n_seeds, N_PAIRS))
    return mu + seed + pair + noise


def crossed(x: np.ndarray, confidence: float) -> tuple[float, float]:
    ci = stats.crossed_interval(x, confidence)
    return ci["lo"], ci["hi"]


def bootstrap(x: np.ndarray, confidence: float, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The pooled two-level percentile bootstrap of a change (stage 1 − stage 0 with stage 0 = 0)."""
    values = np.stack([np.zeros_like(x), x], axis=2)
    ci = stats.paired_stage_ci(values, n_boot, confidence, seed)
    return ci["change_lo"][1], ci["change_hi"][1]


INTERVALS = {"crossed": crossed, "bootstrap": bootstrap}


def coverage(interval, n_seeds: int, ratio: float, reps: int, rng, confidence: float = 0.95) -> float:
    """Share of draws whose interval contains the truth: mu with ≥ 2 seeds; with one seed, which can say
    nothing about other runs (its interval covers pairs only), that run's own mean mu + a_1."""
    ratio = ratio if n_seeds > 1 else 0.0
    tables = draw(rng, n_seeds, ratio, MU, reps=reps)
    hits = 0
    for x in tables:
        lo, hi = interval(x, confidence)
        hits += lo <= MU <= hi
    return hits / reps


def false_label(n_seeds: int, ratio: float, reps: int, rng, options: LabelOptions) -> float:
    """Share of null draws labelled non-stable by the tool's label (half with pair effects, half without);
    with one seed the null is the run's own mean at 0 (no seed effect drawn)."""
    ratio = ratio if n_seeds > 1 else 0.0
    labelled = 0
    for sd_pair in (SD_PAIR, 0.0):
        for x in draw(rng, n_seeds, ratio, 0.0, sd_pair=sd_pair, reps=reps // 2):
            label = aggregate.change_label("earlier", x, own_gain=float("nan"), options=options)
            # with a pair effect, pairs truly move both ways: redistribution is then no false label
            labelled += label != "stable" and not (sd_pair > 0 and label == "redistribution")
    return labelled / (2 * (reps // 2))


def fieller_coverage(n_seeds: int, ratio: float, reps: int, rng, confidence: float = 0.95) -> float:
    """Coverage of the share of own gain: numerator a change with mean MU, denominator a gain with mean 1."""
    ratio = ratio if n_seeds > 1 else 0.0
    hits = 0
    numerators = draw(rng, n_seeds, ratio, MU, reps=reps)
    denominators = draw(rng, n_seeds, ratio, 1.0, reps=reps)
    reported = 0
    for x, g in zip(numerators, denominators):
        ci = stats.fieller_interval(x, g, confidence)
        if np.isnan(ci["lo"]):  # unbounded: the tables print no share (the gain is not shown above 0)
            continue
        reported += 1
        hits += ci["lo"] <= MU / 1.0 <= ci["hi"]
    return hits / max(reported, 1)


HV_POINTS = ((1.0, 0.3), (0.4, 1.2))


def hypervolume_coverage(n_seeds: int, ratio: float, reps: int, rng, confidence: float = 0.95) -> float:
    """Coverage of :func:`seqpref.pareto.hypervolume_interval` for the two points :data:`HV_POINTS`: every
    point's tables share each objective's pair effects (the same eval pairs), with their own seed effects
    and noise."""
    ratio = ratio if n_seeds > 1 else 0.0
    truth = pareto.hypervolume([p[0] for p in HV_POINTS], [p[1] for p in HV_POINTS], (0.0, 0.0))
    hits = 0
    for _ in range(reps):
        axes = []
        for axis in (0, 1):
            shared = rng.normal(0.0, SD_PAIR, size=(1, N_PAIRS))
            axes.append([draw(rng, n_seeds, ratio, point[axis], sd_pair=0.0)[0] + shared for point in HV_POINTS])
        # with one seed the ratio is 0 (no seed effect drawn): the truth is then that run's own points
        ci = pareto.hypervolume_interval(axes[0], axes[1], (0.0, 0.0), confidence, 200, int(rng.integers(1 << 30)))
        hits += ci["lo"] <= truth <= ci["hi"]
    return hits / reps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer draws and cases (the test suite's)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--intervals", default="crossed,fieller,hypervolume,bootstrap")
    args = parser.parse_args(argv)
    reps = args.reps or (200 if args.quick else 2000)
    ratios = (0.0, 2.0, 10.0) if args.quick else RATIOS
    seeds = (2, 3) if args.quick else SEEDS
    options = LabelOptions()
    rng = np.random.default_rng(20261203)
    started = time.perf_counter()
    for n_seeds in seeds:
        for name in args.intervals.split(","):
            for ratio in ratios:
                if name == "fieller":
                    cov = fieller_coverage(n_seeds, ratio, reps, rng)
                    fl = float("nan")
                elif name == "hypervolume":
                    cov = hypervolume_coverage(n_seeds, ratio, max(reps // 5, 50), rng)
                    fl = float("nan")
                elif name == "bootstrap":
                    cov = coverage(bootstrap, n_seeds, ratio, max(reps // 5, 50), rng)
                    fl = float("nan")
                else:
                    cov = coverage(INTERVALS[name], n_seeds, ratio, reps, rng)
                    fl = false_label(n_seeds, ratio, reps, rng, options)
                print(
                    f"seeds={n_seeds} interval={name} ratio={ratio:g} coverage={cov:.3f} false_label={fl:.3f}",
                    flush=True,
                )
    print(f"# {time.perf_counter() - started:.0f} s, {reps} draws per case ({N_PAIRS} pairs)", file=sys.stderr)


if __name__ == "__main__":
    main()
