"""Every registered method on the lab's partial-conflict setting: the baselines table of docs/methods.md.

    python benchmarks/lab_baselines.py [--cores 2] [--out results/baselines] [--json PATH]

The study :func:`config` describes (the reduced lab's options, ``tests/workflow/configs/lab_small.yaml``;
the lab's ``partial_conflict`` setting from ``config/config.yaml``; every method of the registry; seeds 0
and 1; merge at λ ∈ {0, 0.5, 1}; no sham) is written to ``<out>/config.yaml`` and run with
``snakemake --cores N`` into ``<out>/results``. ``tests/workflow/test_methods_workflow.py`` runs the same
study and checks it. ``docs/data/baselines/`` keeps its ``summary``, ``pareto`` and ``hypervolume``
tables, from which ``docs/render.py`` renders the page; ``--json`` records the wall seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from record import json_argument, write_record
from timed_run import snakemake_seconds

from seqpref import methods

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "tests/workflow/configs/lab_small.yaml"
SETTING = "partial_conflict"
LAMBDAS = [0.0, 0.5, 1.0]
SEEDS = [0, 1]
#: figures that read the sham, diagnostics or quartile tables this study does not ask for
LEFT_OUT_FIGURES = ("pair_scatter", "flip_plot", "gradient_cosine", "adapter_movement", "quartile_bars")


def config() -> dict:
    """The baselines study's config: ``lab_small.yaml`` with only the lab's ``partial_conflict``
    setting, every registered method, seeds :data:`SEEDS`, merge at :data:`LAMBDAS`, the sham off."""
    study = yaml.safe_load(SMALL.read_text())
    study["settings"] = {SETTING: yaml.safe_load((REPO / "config/config.yaml").read_text())["settings"][SETTING]}
    study["methods"], study["seeds"] = methods.names(), SEEDS
    study.setdefault("method_options", {})["merge"] = {"lambdas": LAMBDAS}
    study["controls"] = {"sham": False}  # the shams are the lab run's subject, not this one's
    for figure in LEFT_OUT_FIGURES:
        study["figures"].pop(figure, None)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/baselines"))
    json_argument(parser)
    args = parser.parse_args()
    args.out = args.out.resolve()
    fresh = not (args.out / "results").exists()
    args.out.mkdir(parents=True, exist_ok=True)
    study = {**config(), "results": str(args.out / "results")}
    (args.out / "config.yaml").write_text(yaml.safe_dump(study))
    tables = [f"{study['results']}/tables/{name}.parquet" for name in ("summary", "pareto", "hypervolume")]
    seconds = snakemake_seconds(args.cores, tables, [args.out / "config.yaml"])
    print(f"{seconds / 60:.1f} min -> {study['results']}/tables")
    # a rerun reuses finished jobs, so its time is no run time: ``fresh`` says whether it started empty
    write_record(args.json, {"cores": args.cores, "wall_s": seconds, "fresh": fresh})


if __name__ == "__main__":
    main()
