"""Coverage of the tables' intervals on the lab itself: 8 seeds of sequential DPO, every 2- and 3-seed
subset's 95% interval of each objective's change against the 8-seed estimate.

Runs the lab (config/config.yaml's settings; sequential DPO only, seeds 0-7, no sham, no diagnostics)
into its own results folder, then, for every setting, order, objective and stage ≥ 1, and every subset
of 2 or 3 of the 8 seeds, computes the change's interval from that subset's pair scores with the
tables' own function (``crossed``: :func:`seqpref.stats.crossed_interval`) and with the pooled
two-level percentile bootstrap the tables printed before (``bootstrap``), and counts how often it
contains the 8-seed estimate (the mean change over all 8 seeds and the same pairs). The 8-seed value is
itself an estimate, so this measures coverage of a near-truth for the run-to-run part of the error;
the pair-sampling part is shared by both and not tested here (benchmarks/calibration.py tests it).

    python benchmarks/lab_coverage.py [--cores 2] [--out results/lab_coverage]

Prints one line per subset size and interval: ``seeds=N interval=NAME coverage=0.xxx n=K`` and the
median interval width, then the same by setting, then the lab's readings (the earlier objective at the
last stage: change, interval, label) from seeds 0-1, as the lab runs, and from all 8. About 8 min on 2 cores; a rerun reuses what is done.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from timed_run import snakemake_seconds

from seqpref import stats
from seqpref.options import LabelOptions

REPO = Path(__file__).resolve().parents[1]
SEEDS = list(range(8))


def run_lab(out: Path, cores: int) -> tuple[Path, float]:
    """Run the 8-seed sequential-DPO lab into ``out``; returns its pairs table and the seconds it took."""
    out.mkdir(parents=True, exist_ok=True)
    patch = out / "patch.yaml"
    patch.write_text(
        yaml.safe_dump(
            {
                "results": str(out / "results"),
                "methods": ["dpo"],
                "seeds": SEEDS,
                "controls": {"sham": False},
                "diagnostics": {"enabled": False},
            }
        )
    )
    target = out / "results/tables/pairs.parquet"
    return target, snakemake_seconds(cores, [target], ["config/config.yaml", patch])


def bootstrap_change(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The pooled two-level percentile bootstrap of a ``(S, P)`` change table (seeds, then pairs)."""
    ci = stats.paired_stage_ci(np.stack([np.zeros_like(values), values], axis=2), 1000, confidence, 0)
    return ci["change_lo"][1], ci["change_hi"][1]


def coverage_rows(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, order, objective, stage, subset, interval): covered or not, and the width."""
    rows = []
    for (setting, order, objective), group in pairs.groupby(["setting", "order", "objective"], observed=True):
        wide = group.pivot(index="pair_id", columns=["seed", "stage"], values="reward_margin")
        for stage in range(1, int(group["stage"].max()) + 1):
            change = np.stack([(wide[(s, stage)] - wide[(s, stage - 1)]).to_numpy() for s in SEEDS])  # (8, P)
            truth = float(change.mean())
            for size in (2, 3):
                for subset in itertools.combinations(range(len(SEEDS)), size):
                    table = change[list(subset)]
                    ci = stats.crossed_interval(table)
                    for name, (lo, hi) in (("crossed", (ci["lo"], ci["hi"])), ("bootstrap", bootstrap_change(table))):
                        rows.append(
                            {
                                "setting": setting,
                                "order": order,
                                "objective": objective,
                                "stage": stage,
                                "seeds": size,
                                "interval": name,
                                "covered": lo <= truth <= hi,
                                "width": hi - lo,
                            }
                        )
    return pd.DataFrame(rows)


def readings(pairs: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The lab's verdicts from ``seeds``: per setting and order, the earlier objective at the last stage —
    its change with the tables' interval, what that covers, and its label (default label options)."""
    from seqpref import aggregate

    summary = aggregate.summarise(pairs[pairs["seed"].isin(seeds)], LabelOptions())["summary"]
    last = summary[(summary["role"] == "earlier") & (summary["stage"] == summary["stage"].max())]
    return (
        pd.DataFrame(
            {
                "seeds": len(seeds),
                "setting": last["setting"],
                "order": last["order"],
                "objective": last["objective"],
                "own gain": last["own_gain"].round(2),
                "change [95% CI]": [
                    f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                    for v, lo, hi in zip(
                        last.reward_margin_change, last.reward_margin_change_lo, last.reward_margin_change_hi
                    )
                ],
                "threshold": last["label_threshold"].round(2),
                "label": last["label"],
            }
        )
        .sort_values(["setting", "order"])
        .reset_index(drop=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/lab_coverage"))
    args = parser.parse_args()
    out = args.out if args.out.is_absolute() else REPO / args.out
    target, seconds = run_lab(out, args.cores)
    print(f"# lab, 8 seeds of sequential DPO: {seconds / 60:.1f} min", file=sys.stderr)
    rows = coverage_rows(pd.read_parquet(target))
    rows.to_parquet(out / "coverage.parquet")
    for (size, name), part in rows.groupby(["seeds", "interval"]):
        print(
            f"seeds={size} interval={name} coverage={part['covered'].mean():.3f} n={len(part)} "
            f"median_width={part['width'].median():.3f}"
        )
    by_setting = rows.groupby(["seeds", "interval", "setting"])["covered"].mean().unstack("setting").round(3)
    print(by_setting.to_string())
    pairs = pd.read_parquet(target)
    print(pd.concat([readings(pairs, [0, 1]), readings(pairs, SEEDS)], ignore_index=True).to_markdown(index=False))


if __name__ == "__main__":
    main()
