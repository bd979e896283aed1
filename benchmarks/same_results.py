"""Do two results folders hold the same study? A check for a change that must not change results.

    python benchmarks/same_results.py OLD_RESULTS NEW_RESULTS     # exit 0 when every file agrees

Run the same config at two commits (each into its own results folder), then compare: every tensor of
the base model and of every adapter bit for bit, and every row of the data, base log-prob, pair-score,
sham-data and training-log tables exactly (wall-clock metrics of the training logs left out: they
differ from run to run). Parquet metadata (provenance: commit, time) is not compared. Prints one line
per kind of file and each file that differs; exit 1 when anything differs or a file is missing on one
side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

WEIGHTS = ("base_model/*.safetensors", "adapters/**/*.safetensors")
TABLES = (
    "data/**/*.parquet",
    "base_logps/**/*.parquet",
    "scores/**/*.parquet",
    "sham/**/*.parquet",
    "train_logs/**/*.parquet",
)
# training-log metrics measured in wall-clock time (or derived from it): not part of a result
WALL_CLOCK = "seconds|runtime|per_second"


def same_tensors(a: Path, b: Path) -> bool:
    """True when two safetensors files hold the same names, dtypes, shapes and bytes."""
    ta, tb = load_file(a), load_file(b)
    return ta.keys() == tb.keys() and all(
        ta[k].dtype == tb[k].dtype
        and ta[k].shape == tb[k].shape
        and torch.equal(ta[k].contiguous().view(torch.uint8), tb[k].contiguous().view(torch.uint8))
        for k in ta
    )


def table_rows(root: Path, rel: Path) -> pd.DataFrame:
    """The rows of table ``rel`` under ``root``; a training log's without its wall-clock metrics."""
    frame = pd.read_parquet(root / rel)
    if rel.parts[0] == "train_logs":
        frame = frame[~frame["metric"].astype(str).str.contains(WALL_CLOCK)].reset_index(drop=True)
    return frame


def compare(old: Path, new: Path) -> list[str]:
    """Compare two results folders; returns the differences (one line each; empty when they agree)
    and prints a count per kind of file."""
    problems = []
    for pattern in WEIGHTS + TABLES:
        files_old = {p.relative_to(old) for p in old.glob(pattern)}
        files_new = {p.relative_to(new) for p in new.glob(pattern)}
        for missing in sorted(files_old ^ files_new):
            problems.append(f"only in {old if missing in files_old else new}: {missing}")
        same = 0
        for rel in sorted(files_old & files_new):
            if pattern in WEIGHTS:
                agree = same_tensors(old / rel, new / rel)
            else:
                a, b = table_rows(old, rel), table_rows(new, rel)
                agree = a.equals(b) and list(a.dtypes) == list(b.dtypes)
            same += agree
            if not agree:
                problems.append(f"differs: {rel}")
        print(f"{pattern}: {same} of {len(files_old | files_new)} the same")
    return problems


def main(argv=None) -> int:
    """CLI: compare OLD and NEW; 0 when they hold the same results, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="results folder of the earlier commit")
    parser.add_argument("new", type=Path, help="results folder of the later commit")
    args = parser.parse_args(argv)
    problems = compare(args.old, args.new)
    for line in problems:
        print(line)
    print("the same results" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
