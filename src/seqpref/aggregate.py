"""Pair scores → tables: every scored pair (``pairs.parquet``) and one row per run × stage × objective
(``summary.parquet``) with means, paired-bootstrap CIs, changes from the previous stage and a label.

Reads Parquet only (never a model). ``python -m seqpref.aggregate summary OUT_PAIRS OUT_SUMMARY
--options JSON SCORE.parquet...`` and ``python -m seqpref.aggregate training OUT TRAIN_LOG.parquet...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from seqpref import plan, provenance, stats, tables

log = logging.getLogger("seqpref.aggregate")

RUN_KEYS = ["setting", "method", "order", "seed"]
METRICS = ["reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"]
CHANGE_METRICS = ["reward_margin", "rel_accuracy", "ln_margin"]
LABEL_METRICS = ["reward_margin", "dpo_margin", "ln_margin", "rel_accuracy"]


@dataclass
class LabelOptions:
    """How changes are labelled (``labels`` in the config)."""

    metric: str = "reward_margin"  # whose change is labelled
    min_effect: float = 0.25  # |change| below this is ``stable`` even when the CI excludes 0
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.metric not in LABEL_METRICS:
            raise ValueError(f"labels.metric must be one of {LABEL_METRICS}, got {self.metric!r}")
        if self.min_effect < 0 or not 0 < self.confidence < 1 or self.n_boot < 100:
            raise ValueError("labels: need min_effect ≥ 0, 0 < confidence < 1 and n_boot ≥ 100")


def _stage_matrix(group: pd.DataFrame, metric: str, stages: list[int]) -> np.ndarray:
    """``(n_pairs, n_stages)`` of ``metric``; raises if a pair is missing at some stage."""
    wide = group.pivot(index="pair_id", columns="stage", values=metric).reindex(columns=stages)
    if wide.isna().any().any():
        missing = wide.columns[wide.isna().any()].tolist()
        raise ValueError(f"{metric}: some pairs are not scored at stages {missing}")
    return wide.to_numpy()


def summarise_objective(group: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    """Summary rows (one per stage) of one objective within one run.

    ``group`` holds that objective's pair scores at every stage of the run (PAIR_SCORES columns).
    Every metric and change is bootstrapped with the same pair resamples (paired across stages).
    """
    stages = sorted(group["stage"].unique())
    if stages != list(range(len(stages))):
        raise ValueError(f"stages must run 0..K without gaps, got {stages}")
    first = group.iloc[0]
    rows = pd.DataFrame({"stage": stages})
    group = group.assign(rel_accuracy=(group["reward_margin"] > 0).astype(float))
    n = group.groupby("stage")["pair_id"].nunique().reindex(stages).to_numpy()
    rows["n"] = n
    for metric in METRICS:
        # the same seed for every metric: one set of resamples, so all CIs are paired
        ci = stats.paired_stage_ci(
            _stage_matrix(group, metric, stages), options.n_boot, options.confidence, options.seed
        )
        rows[metric], rows[f"{metric}_lo"], rows[f"{metric}_hi"] = ci["mean"], ci["lo"], ci["hi"]
        if metric in CHANGE_METRICS or metric == options.metric:
            rows[f"{metric}_change"] = ci["change"]
            rows[f"{metric}_change_lo"] = ci["change_lo"]
            rows[f"{metric}_change_hi"] = ci["change_hi"]
    for key in RUN_KEYS + ["objective"]:
        rows[key] = first[key]
    order = first["order"]
    rows["trained_objective"] = [None if s == 0 else plan.stage_objective(order, s) for s in stages]
    rows["role"] = [plan.role(first["objective"], order, s) for s in stages]
    rows["label_metric"] = options.metric
    change = rows[f"{options.metric}_change"]
    lo, hi = rows[f"{options.metric}_change_lo"], rows[f"{options.metric}_change_hi"]
    rows["label"] = [
        None
        if s == 0
        else "trained"
        if r == "trained"
        else stats.label_change(c, a, b, options.min_effect)
        for s, r, c, a, b in zip(stages, rows["role"], change, lo, hi)
    ]
    return rows


def summarise(pairs: pd.DataFrame, options: LabelOptions) -> pd.DataFrame:
    """SUMMARY rows for every run × objective × stage in ``pairs`` (PAIR_SCORES columns)."""
    parts = [
        summarise_objective(group, options)
        for _, group in pairs.groupby(RUN_KEYS + ["objective"], sort=True, observed=True)
    ]
    summary = pd.concat(parts, ignore_index=True)
    return summary[[c for c in tables.SUMMARY.names if c in summary.columns]]


def summary_tables(score_paths: list[str], pairs_out: str, summary_out: str, options: LabelOptions) -> pd.DataFrame:
    """Concatenate score files into ``pairs_out`` and write the summary to ``summary_out``; returns it."""
    pairs = tables.read_tables(score_paths)
    duplicated = pairs.duplicated(RUN_KEYS + ["stage", "objective", "pair_id"])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} pair scores appear twice in the score files")
    record = provenance.provenance("aggregate", {"labels": asdict(options), "inputs": len(score_paths)})
    tables.write_table(pairs, pairs_out, tables.PAIR_SCORES, record)
    summary = summarise(pairs, options)
    for column in tables.SUMMARY.names:  # change columns of metrics that are not tracked stay NaN
        if column not in summary.columns:
            summary[column] = np.nan
    tables.write_table(summary, summary_out, tables.SUMMARY, record)
    return summary


def training_table(log_paths: list[str], out: str) -> pd.DataFrame:
    """Concatenate per-stage training logs into one TRAINING table at ``out``; returns it."""
    frame = tables.read_tables(log_paths)
    tables.write_table(frame, out, tables.TRAINING, provenance.provenance("collect_training", {"inputs": len(log_paths)}))
    return frame


def main(argv=None) -> None:
    """CLI: ``summary`` (aggregate rule) or ``training`` (collect_training rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary")
    summary.add_argument("pairs_out")
    summary.add_argument("summary_out")
    summary.add_argument("scores", nargs="+")
    summary.add_argument("--options", default="{}", help="JSON of LabelOptions")
    training = commands.add_parser("training")
    training.add_argument("out")
    training.add_argument("logs", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "summary":
        frame = summary_tables(args.scores, args.pairs_out, args.summary_out, LabelOptions(**json.loads(args.options)))
        labels = frame["label"].value_counts().to_dict()
        log.info("%d score files -> %d summary rows; labels %s", len(args.scores), len(frame), labels)
    else:
        frame = training_table(args.logs, args.out)
        log.info("%d training logs -> %d rows", len(args.logs), len(frame))


if __name__ == "__main__":
    main()
