"""Time the aggregation of one million pair-score rows (Parquet in, Parquet out).

    python benchmarks/aggregate_1m.py [--rows 1000000] [--n-boot 1000]

Writes synthetic score files shaped like the lab's (4 settings × 2 orders × stages 0..2 × 2
objectives), then times ``seqpref.aggregate.summary_tables`` on them end to end (read, pivot,
bootstrap, label, write all four tables). As a baseline in the same process it also times the
bootstrap core both ways on the largest objective: the counts @ values product seqpref uses and the
plain gather ``values[indices].mean(axis=1)``; it reports the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from record import json_argument, write_record

from seqpref import aggregate, stats, tables
from seqpref.options import LabelOptions


def synthetic_scores(rows: int, out: Path, seed: int = 0) -> list[str]:
    """Score files of 8 runs × 3 stages × 2 objectives totalling about ``rows`` rows; returns paths."""
    rng = np.random.default_rng(seed)
    runs = [(f"setting{s}", order) for s in range(4) for order in ("a-b", "b-a")]
    n_pairs = rows // (len(runs) * 3 * 2)
    paths = []
    for setting, order in runs:
        for stage in range(3):
            parts = []
            for objective in ("a", "b"):
                margin = rng.normal(0.5 * stage, 1.0, n_pairs)
                parts.append(
                    pd.DataFrame(
                        {
                            "setting": setting,
                            "method": "dpo",
                            "order": order,
                            "seed": 0,
                            "stage": stage,
                            "trained_objective": None if stage == 0 else order.split("-")[stage - 1],
                            "objective": objective,
                            "pair_id": [f"{objective}{i}" for i in range(n_pairs)],
                            "logp_chosen": -10.0,
                            "logp_rejected": -11.0,
                            "ref_logp_chosen": -10.0,
                            "ref_logp_rejected": -11.0,
                            "n_tokens_chosen": 12,
                            "n_tokens_rejected": 13,
                            "truncated": False,
                            "beta": 0.1,
                            "reward_margin": margin if stage else 0.0,
                            "dpo_margin": 0.1 * margin if stage else 0.0,
                            "ln_margin": rng.normal(0, 0.1, n_pairs),
                        }
                    )
                )
            path = out / f"{setting}_{order}_stage{stage}.parquet"
            tables.write_table(pd.concat(parts, ignore_index=True), path, tables.PAIR_SCORES, {"benchmark": True})
            paths.append(str(path))
    return paths


def gather_means(values: np.ndarray, indices: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Baseline bootstrap core: gather every resample and average it."""
    out = np.empty((indices.shape[0], values.shape[1]))
    for start in range(0, indices.shape[0], chunk):
        out[start : start + chunk] = values[indices[start : start + chunk]].mean(axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--n-boot", type=int, default=1000)
    json_argument(parser)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seqpref-agg-"))
    paths = synthetic_scores(args.rows, work / "scores")
    n_rows = sum(len(pd.read_parquet(p, columns=["pair_id"])) for p in paths)
    options = LabelOptions(n_boot=args.n_boot)
    outputs = {
        name: str(work / f"{name}.parquet") for name in ("pairs", "summary", "transfer", "quartiles", "controls")
    }
    start = time.perf_counter()
    frames = aggregate.summary_tables(paths, outputs, options)
    elapsed = time.perf_counter() - start
    print(
        f"aggregate {n_rows:,} pair rows from {len(paths)} files, n_boot={args.n_boot}: {elapsed:.2f} s "
        f"({len(frames['summary'])} summary, {len(frames['transfer'])} transfer, {len(frames['quartiles'])} quartile rows)"
    )

    n_pairs = n_rows // (8 * 3 * 2)  # pairs of one objective in one run
    values = np.random.default_rng(1).normal(size=(n_pairs, 3))
    indices = stats.bootstrap_indices(n_pairs, args.n_boot, 0)
    t0 = time.perf_counter()
    ours = stats._resampled_means(values, indices)
    t1 = time.perf_counter()
    baseline = gather_means(values, indices)
    t2 = time.perf_counter()
    assert np.allclose(ours, baseline)
    print(
        f"bootstrap core, {n_pairs:,} pairs × 3 stages × {args.n_boot} resamples: counts@values {t1 - t0:.3f} s, "
        f"gather {t2 - t1:.3f} s, speed-up ×{(t2 - t1) / (t1 - t0):.1f}"
    )
    shutil.rmtree(work, ignore_errors=True)
    write_record(
        args.json,
        {
            "rows": n_rows,
            "files": len(paths),
            "n_boot": args.n_boot,
            "aggregate_s": elapsed,
            "bootstrap_pairs": n_pairs,
            "bootstrap_s": t1 - t0,
            "gather_s": t2 - t1,
        },
    )


if __name__ == "__main__":
    main()
