"""What each stage trained on: its budget, so that methods are compared at a budget that is named.

A stage logs, at its last step (``budget/*`` rows of its training log, next to ``adapter/change_norm``):

* ``budget/pairs`` — preference pairs whose loss was backpropagated, summed over micro-batches (a pair
  drawn twice counts twice; a mix step's pairs of every objective, an ALRIGHT or MAXRIGHT step's of the
  objective it descends; a replay stage's replayed pairs);
* ``budget/tokens`` — non-padding tokens of every training forward's sequences (prompt + chosen and
  prompt + rejected, each counted whole, as TRL tokenises them): the trained pairs', MAXRIGHT's no-grad
  gap evaluations', and the extra passes a method runs over the chosen sequences
  (:attr:`seqpref.methods.base.Method.chosen_passes`: SPO's look-ahead). A prompt shared by chosen and
  rejected (``share_prompt``) still counts twice: the budget is what the method computes on, not how fast
  one implementation runs it;
* ``budget/optimizer_steps`` — optimiser steps.

:func:`stage_budgets` reads them back from the training table; :func:`run_budgets` gives each run's
seed-mean budget per stage and through each stage (cumulative), the columns the verdict and Pareto tables
carry. Diagnostics' probe passes are not training and are not counted.
"""

from __future__ import annotations

import pandas as pd

#: the training-log metric of each budget column
METRICS = {"pairs_seen": "budget/pairs", "tokens": "budget/tokens", "optimizer_steps": "budget/optimizer_steps"}
RUN_KEYS = ["setting", "method", "order", "stage"]


def batch_budget(batch: dict, chosen_passes: int = 0) -> tuple[int, int]:
    """``(pairs, tokens)`` of one collated TRL DPO batch (``input_ids`` rows ``[chosen; rejected]``,
    ``attention_mask`` 1 on real tokens): its pairs, and its non-padding tokens plus ``chosen_passes`` times
    those of its chosen rows (ints)."""
    half = batch["input_ids"].shape[0] // 2
    mask = batch["attention_mask"]
    return half, int(mask.sum()) + chosen_passes * int(mask[:half].sum())


def add(budget: dict, batch: dict, trained: bool = True, chosen_passes: int = 0) -> None:
    """Count one forward of ``batch`` into a trainer's running ``budget`` (``{"pairs", "tokens"}``): its
    tokens always, its pairs when ``trained`` (the loss is backpropagated; not a no-grad evaluation such as
    MAXRIGHT's gap refresh)."""
    pairs, tokens = batch_budget(batch, chosen_passes)
    budget["pairs"] += pairs if trained else 0
    budget["tokens"] += tokens


def budget_record(budget: dict, steps: int) -> dict:
    """The training-log record of a stage's budget: ``{"budget/pairs": n, "budget/tokens": n,
    "budget/optimizer_steps": steps}`` from the trainer's running ``{"pairs", "tokens"}``."""
    return {
        METRICS["pairs_seen"]: budget["pairs"],
        METRICS["tokens"]: budget["tokens"],
        METRICS["optimizer_steps"]: steps,
    }


def stage_budgets(training: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, method, order, seed, stage) of a TRAINING frame with the :data:`METRICS`
    columns (floats; NaN where unknown: a stage resumed from a checkpoint that predates budgets). A stage
    whose log predates the budget rows has none, and is absent. A joint stage files its rows under the
    run's objective only, so nothing is counted twice."""
    keys = ["setting", "method", "order", "seed", "stage"]
    rows = training[training["metric"].isin(METRICS.values())]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="max", dropna=False).reset_index()
    for column, metric in METRICS.items():
        wide[column] = wide[metric].astype(float) if metric in wide else pd.Series(dtype=float)
    return wide[keys + list(METRICS)]


def run_budgets(training: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, order, stage): the seed-mean budget of that stage (:data:`METRICS` columns)
    and through it (``*_total``: stages 1..stage summed), floats; a total is NaN unless every stage from 1
    to that stage has a known budget for every seed (never a sum that silently leaves a stage out)."""
    stages = stage_budgets(training)
    if stages.empty:
        return pd.DataFrame(columns=RUN_KEYS + list(METRICS) + [f"{c}_total" for c in METRICS])
    means = stages.groupby(RUN_KEYS, as_index=False)[list(METRICS)].agg(lambda v: v.mean(skipna=False))
    means = means.sort_values(RUN_KEYS).reset_index(drop=True)
    run = means.groupby(["setting", "method", "order"])
    # through stage k needs every stage 1..k: a stage without a budget leaves the totals from it on unknown
    complete = run["stage"].cumcount() + 1 == means["stage"]
    for column in METRICS:
        total = run[column].cumsum(skipna=False)
        means[f"{column}_total"] = total.where(
            complete & run[column].transform(lambda v: v.notna().cumprod().astype(bool))
        )
    return means
