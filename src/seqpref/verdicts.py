"""The verdicts a reader looks for first: per setting, order and method, what happened to each objective
after the stage that trained it — its change with the interval and what that interval covers, its label,
and the sham control's label or why the control is not valid there — with the budget the run had spent
through that stage (:mod:`seqpref.budget`), so that runs are compared at a budget that is named. One row
per run, objective and later stage, read off the summary, controls and training tables (nothing is
recomputed).

``python -m seqpref.verdicts SUMMARY CONTROLS OUT.tsv [--training TRAINING]`` (the ``verdicts`` rule): a
tab-separated table for a terminal or a spreadsheet, shown first in the HTML report.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

log = logging.getLogger("seqpref.verdicts")

#: the verdict table's columns, in order
COLUMNS = [
    "setting",
    "order",
    "method",
    "n_seeds",
    "objective",
    "stage",
    "trained_at_stage",
    "role",
    "change",
    "change_lo",
    "change_hi",
    "interval_covers",
    "label",
    "label_threshold",
    "control_label",
    "control_invalid_reason",
    "pairs_seen_total",
    "tokens_total",
    "optimizer_steps_total",
]
ROLES_AFTER_OWN_STAGE = ("earlier", "replayed", "joint")


def verdict_rows(
    summary: pd.DataFrame, controls: pd.DataFrame | None = None, training: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per run (setting, method, order), objective and stage after the objective's own stage.

    Takes the SUMMARY table and the CONTROLS table (or None without shams); returns :data:`COLUMNS`:
    ``change`` (label metric units, from the previous stage) with ``change_lo``/``change_hi`` and
    ``interval_covers``; the summary's ``label``; ``control_label`` (empty where the run has no sham) and
    ``control_invalid_reason``; and from the TRAINING table (:func:`seqpref.budget.run_budgets`) the run's
    seed-mean pairs, tokens and optimiser steps through the row's stage (empty for a run that trains
    nothing itself, merge, or without ``training``). A joint run's stages train every objective: its rows
    after stage 1 are there (``trained``), so that what each method did to an objective reads in one table."""
    from seqpref import budget

    after = summary[summary["role"].isin(ROLES_AFTER_OWN_STAGE) & (summary["stage"] >= 2)].copy()
    metric = after["label_metric"].iloc[0] if len(after) else "reward_margin"
    rows = pd.DataFrame(
        {
            "setting": after["setting"],
            "order": after["order"],
            "method": after["method"],
            "n_seeds": after["n_seeds"],
            "objective": after["objective"],
            "stage": after["stage"],
            "trained_at_stage": after["trained_objective"],
            "role": after["role"],
            "change": after[f"{metric}_change"],
            "change_lo": after[f"{metric}_change_lo"],
            "change_hi": after[f"{metric}_change_hi"],
            "interval_covers": after["interval_covers"],
            "label": after["label"],
            "label_threshold": after["label_threshold"],
        }
    )
    keys = ["setting", "method", "order", "objective", "stage"]
    if controls is not None and len(controls):
        rows = rows.merge(controls[keys + ["control_label", "control_invalid_reason"]], on=keys, how="left")
    else:
        rows["control_label"] = None
        rows["control_invalid_reason"] = None
    totals = [f"{column}_total" for column in budget.METRICS]
    spent = budget.run_budgets(training) if training is not None else None
    if spent is not None and len(spent):
        rows = rows.merge(spent[budget.RUN_KEYS + totals], on=budget.RUN_KEYS, how="left")
    else:
        rows[totals] = float("nan")
    rows["control_label"] = rows["control_label"].fillna("")
    rows["control_invalid_reason"] = rows["control_invalid_reason"].fillna("")
    return rows[COLUMNS].sort_values(["setting", "order", "method", "objective", "stage"]).reset_index(drop=True)


def write_tsv(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` tab-separated, floats to 4 significant digits."""
    frame.to_csv(path, sep="\t", index=False, float_format="%.4g")


def main(argv=None) -> None:
    """CLI: ``SUMMARY CONTROLS OUT.tsv``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("summary")
    parser.add_argument("controls")
    parser.add_argument("out")
    parser.add_argument("--training", default=None, help="tables/training.parquet: the runs' budgets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    training = pd.read_parquet(args.training) if args.training else None
    frame = verdict_rows(pd.read_parquet(args.summary), pd.read_parquet(args.controls), training)
    write_tsv(frame, args.out)
    log.info("%d verdicts -> %s; labels %s", len(frame), args.out, frame["label"].value_counts().to_dict())


if __name__ == "__main__":
    main()
