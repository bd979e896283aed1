"""Time the lab study end to end and summarise every job's Snakemake benchmark file.

    python benchmarks/lab_demo.py [--config config/config.yaml] [--cores 2] [--workdir DIR] [--cold] [--json PATH]

Copies the workflow into a fresh working directory (so nothing is reused), runs
``snakemake --cores N`` there, and prints the wall time and, per rule, the job count, mean and max
wall seconds and the peak resident memory (max_rss, MB) from ``results/benchmarks/**.tsv``. ``--cold``
runs it with ``warm_start: false`` (every step in a fresh Python, as before warm start).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from record import json_argument, write_record

from seqpref.warm import ran_warm

REPO = Path(__file__).resolve().parents[1]


def job_table(results: Path) -> pd.DataFrame:
    """One row per benchmark file: rule, seconds (wall), max_rss (MB; NaN for a job that ran warm, whose
    benchmark measured its launcher: seqpref.warm.ran_warm), warm."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        relative = path.relative_to(results / "benchmarks")
        frame = pd.read_csv(path, sep="\t")
        warm = ran_warm((results / "logs" / relative).with_suffix(".log"))
        rows.append(
            {
                "rule": relative.parts[0].removesuffix(".tsv"),
                "seconds": float(frame["s"].iloc[0]),
                "warm": warm,
                "max_rss": float("nan") if warm else float(frame["max_rss"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="fresh directory to run in (default: a temporary one)")
    parser.add_argument("--cold", action="store_true", help="warm_start: false (each step imports torch afresh)")
    json_argument(parser)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="seqpref-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copy(REPO / "environment.yml", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow", dirs_exist_ok=True)
    (workdir / "config").mkdir(exist_ok=True)
    shutil.copy(args.config, workdir / "config/config.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with open(workdir / "snakemake.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
            + (["--config", "warm_start=False"] if args.cold else []),
            cwd=workdir,
            env=env,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - start
    jobs = job_table(workdir / "results")
    per_rule = jobs.groupby("rule").agg(
        jobs=("seconds", "size"), mean_s=("seconds", "mean"), max_s=("seconds", "max"), peak_rss_mb=("max_rss", "max")
    )
    print(f"workdir: {workdir}")
    print(f"config: {args.config}  cores: {args.cores}")
    print(f"wall time, snakemake end to end: {wall:.1f} s")
    print(f"sum of benchmarked job times: {jobs['seconds'].sum():.1f} s over {len(jobs)} jobs")
    print(per_rule.round(2).to_string())
    write_record(
        args.json,
        {
            "config": Path(args.config).resolve().relative_to(REPO).as_posix()
            if Path(args.config).resolve().is_relative_to(REPO)
            else args.config,
            "cores": args.cores,
            "warm_start": not args.cold,
            "wall_s": wall,
            "jobs": len(jobs),
            "job_seconds": float(jobs["seconds"].sum()),
            "rules": json.loads(per_rule.to_json(orient="index")),
        },
    )
    if jobs["max_rss"].notna().any():
        heaviest = jobs.loc[jobs["max_rss"].idxmax()]
        print(f"heaviest job: {heaviest['rule']} peak RSS {heaviest['max_rss']:.0f} MB")
    if jobs["warm"].any():
        print(
            f"{int(jobs['warm'].sum())} job(s) ran warm: their benchmarks measured the launcher, so their memory is "
            "left out (NaN); run with a config that sets warm_start: false to measure it"
        )


if __name__ == "__main__":
    main()
