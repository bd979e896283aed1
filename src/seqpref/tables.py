"""Parquet schemas of every table seqpref writes, and the one helper that writes them.

An explicit ``pa.Schema`` is the full column list of each file: writing a frame that lacks a column
fails, and a column the schema does not list is an error too (``pa.Table.from_pandas(schema=)`` would
drop it silently, so :func:`write_table` checks first). Provenance (config hash, package versions,
git commit) is stored under the ``seqpref`` key of the schema metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"seqpref"

#: one preference pair of one objective's split, after validation (prepare_data)
PAIRS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt", pa.string()),  # text; a conversation as its transcript (tokenization.render_transcript)
        ("prompt_messages", pa.string()),  # JSON of a conversational prompt's messages; null for plain text
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("source", pa.string()),  # JSON of the source fields kept for analysis
    ]
)

#: token-level log-probs of a model on one split (base_logps, and policy scoring)
LOGPS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("logp_chosen", pa.float64()),  # nats, summed over response tokens (EOS included)
        ("logp_rejected", pa.float64()),
        ("n_tokens_chosen", pa.int64()),  # response tokens scored (after truncation)
        ("n_tokens_rejected", pa.int64()),
        ("truncated", pa.bool_()),  # prompt + response exceeded max_length; scored on what fits
    ]
)

_RUN_KEYS = [
    ("setting", pa.string()),
    ("method", pa.string()),
    ("order", pa.string()),
    ("seed", pa.int64()),
    ("stage", pa.int64()),  # 0 = base model
    ("trained_objective", pa.string()),  # objective of this stage; null at stage 0
]

#: one eval pair of one objective scored after one stage of one run (score_stage)
PAIR_SCORES = pa.schema(
    _RUN_KEYS
    + [
        ("objective", pa.string()),
        ("pair_id", pa.string()),
        ("logp_chosen", pa.float64()),
        ("logp_rejected", pa.float64()),
        ("ref_logp_chosen", pa.float64()),  # base model: the evaluation reference of every stage
        ("ref_logp_rejected", pa.float64()),
        ("n_tokens_chosen", pa.int64()),
        ("n_tokens_rejected", pa.int64()),
        ("truncated", pa.bool_()),
        ("beta", pa.float64()),
        ("reward_margin", pa.float64()),
        ("dpo_margin", pa.float64()),
        ("ln_margin", pa.float64()),
    ]
)


def _ci_columns(name: str) -> list[tuple[str, pa.DataType]]:
    return [(name, pa.float64()), (f"{name}_lo", pa.float64()), (f"{name}_hi", pa.float64())]


# aggregates pool the seeds of a run: CIs are over pairs and seeds (two-level bootstrap)
_POOLED_KEYS = [
    ("setting", pa.string()),
    ("method", pa.string()),
    ("order", pa.string()),
    ("n_seeds", pa.int64()),  # seeds pooled
]

#: one objective after one stage of one run (seeds pooled), with its change from the previous stage (aggregate)
SUMMARY = pa.schema(
    _POOLED_KEYS
    + [
        ("stage", pa.int64()),  # 0 = base model
        ("trained_objective", pa.string()),  # objective of this stage, "joint" for a joint method; null at stage 0
        ("objective", pa.string()),
        ("role", pa.string()),  # base | trained | earlier | later | joint | replayed (plan.role)
        ("n", pa.int64()),  # eval pairs (per seed)
    ]
    + _ci_columns("reward_margin")
    + _ci_columns("dpo_margin")
    + _ci_columns("rel_accuracy")
    + _ci_columns("ln_margin")
    + _ci_columns("reward_margin_change")
    + _ci_columns("rel_accuracy_change")
    + _ci_columns("ln_margin_change")
    + [
        ("reward_margin_seed_sd", pa.float64()),  # SD across seeds of the per-seed mean (NaN with one seed)
        # what every interval of the row covers: "pairs (1 seed)" or "pairs and seeds (S seeds)" (stats.covers)
        ("interval_covers", pa.string()),
        # pairs whose seed-mean change lies above / below the runs' own noise band and beyond labels.pair_move
        # (stats.pair_heterogeneity; NaN with one seed, where pair effects and run noise cannot be told apart)
        ("share_up", pa.float64()),
        ("share_down", pa.float64()),
        ("pair_effect_p", pa.float64()),  # F test of pairs moving differently beyond the runs' noise (≥ 2 seeds)
        ("own_gain", pa.float64()),  # earlier objectives: label metric gained in its own stage (m_own − m_own−1)
    ]
    + _ci_columns("share_of_own_gain")  # earlier objectives: this stage's change / own_gain (Fieller's interval)
    + [
        ("label_metric", pa.string()),
        # |change| needed for a non-stable label: max(min_effect, min_share · max(own_gain, 0)) (stats.label_threshold)
        ("label_threshold", pa.float64()),
        ("label_criterion", pa.string()),  # relative (min_share · own_gain sets it) | absolute (min_effect)
        # trained (the stage trains it: alone, jointly or replayed) | degradation | positive_transfer | stable |
        # redistribution; null at stage 0
        ("label", pa.string()),
    ]
)

#: the trade-off of a two-objective setting: every run's final point and the merge front's (seqpref.pareto)
PARETO = pa.schema(
    _POOLED_KEYS
    + [
        ("point", pa.string()),  # final (a run's last stage) | lambda=<λ> (a merge front point)
        ("lam", pa.float64()),  # the front point's λ (weight share of objective_x); null for a run's final point
        ("objective_x", pa.string()),  # the setting's first objective (config order)
        ("objective_y", pa.string()),  # its second
        ("metric", pa.string()),  # reward_margin (nats)
    ]
    + _ci_columns("x")
    + _ci_columns("y")
    + [
        ("interval_covers", pa.string()),  # what the x and y intervals cover (stats.covers)
        ("reference_x", pa.float64()),  # the base model (stage 0) on objective_x: the hypervolume's reference
        ("reference_y", pa.float64()),
        # another point is at least as good on both means and shown better on one (pareto.dominated_by_intervals)
        ("dominated", pa.bool_()),
        ("dominated_by_means", pa.bool_()),  # the same on the means alone, no interval
        # the run's budget through its final stage, seed means (seqpref.budget); null for a merge front point
        ("pairs_seen_total", pa.float64()),
        ("tokens_total", pa.float64()),
        ("optimizer_steps_total", pa.float64()),
    ]
)

#: per (setting, method): the area its points dominate beyond the base model (seqpref.pareto)
HYPERVOLUME = pa.schema(
    [
        ("setting", pa.string()),
        ("method", pa.string()),
        ("objective_x", pa.string()),
        ("objective_y", pa.string()),
        ("metric", pa.string()),
        ("n_points", pa.int64()),  # the method's points: one per run (order), and the merge front's
        ("n_nondominated", pa.int64()),  # of them, not shown dominated by any point of the setting
        ("n_seeds", pa.int64()),
        ("reference_x", pa.float64()),
        ("reference_y", pa.float64()),
    ]
    + _ci_columns(
        "hypervolume"
    )  # of the union of its points, metric units squared (nats²; pareto.hypervolume_interval)
    + _ci_columns("best_point_hypervolume")  # of its best single point: comparable across numbers of points
    + [("interval_covers", pa.string())]
)

#: the sham control: per sequential run (seeds pooled), sham stage k and objective not trained at k,
#: its change from stage k-1 under the real stage and under the sham, and their difference (aggregate)
CONTROLS = pa.schema(
    _POOLED_KEYS
    + [
        ("objective", pa.string()),
        ("stage", pa.int64()),  # the stage (>= 2) that has a sham
        ("trained_objective", pa.string()),  # what stage k (and its sham) trained
        ("role", pa.string()),  # earlier | later | replayed (plan.role)
        ("n", pa.int64()),  # eval pairs (per seed)
        ("metric", pa.string()),  # labels.metric
        ("interval_covers", pa.string()),  # what the intervals cover (stats.covers)
    ]
    + _ci_columns("change_real")  # metric(stage k) - metric(stage k-1)
    + _ci_columns("change_sham")  # metric(sham k) - metric(stage k-1)
    + _ci_columns("specific")  # change_real - change_sham = metric(stage k) - metric(sham k): stage k's preferences
    # the neutrality check: stage k's own objective's change from stage k-1 under the sham; far from 0,
    # the sham moved the preference itself and ``specific`` under-counts (seqpref.controls)
    + _ci_columns("sham_own_change")
    + [("real_own_change", pa.float64())]  # stage k's own objective's change under the real stage k
    + [("own_gain", pa.float64())]  # earlier objectives: metric gained in its own stage
    + _ci_columns("specific_share")  # specific / own_gain
    + [
        # ‖θ_after − θ_before‖₂ of the LoRA parameters over stage k and over its sham (seed means), and
        # sham / real: below 1, the sham moved less, and drift that grows with movement is under-counted
        ("change_norm_real", pa.float64()),
        ("change_norm_sham", pa.float64()),
        ("change_norm_ratio", pa.float64()),
    ]
    + [
        ("label_threshold", pa.float64()),  # as the summary's at this stage
        ("label_criterion", pa.string()),
        ("label_real", pa.string()),  # the summary's label of change_real
        ("label_sham", pa.string()),  # degradation | positive_transfer | stable, of change_sham
        # why the sham is no null here (seqpref.controls.control_validity); null when it is valid
        ("control_invalid_reason", pa.string()),
        # specific_degradation | specific_transfer | drift | inconclusive | stable | control_invalid
        # (seqpref.controls.CONTROL_LABELS)
        ("control_label", pa.string()),
    ]
)

#: backward / forward transfer of one objective in one run (seeds pooled), per metric (aggregate)
TRANSFER = pa.schema(
    _POOLED_KEYS
    + [
        ("objective", pa.string()),
        ("metric", pa.string()),
        ("own_stage", pa.int64()),  # the stage that trained the objective (1 for a joint method)
        ("last_stage", pa.int64()),
        ("interval_covers", pa.string()),  # what the intervals cover (stats.covers)
    ]
    + _ci_columns("final")  # metric(last stage)
    + _ci_columns("bwt")  # metric(last) - metric(own stage)
    + _ci_columns("fwt")  # metric(own stage - 1) - metric(0)
)

#: the quartile decomposition: pairs split by their margin after their own stage (aggregate)
QUARTILES = pa.schema(
    _POOLED_KEYS
    + [
        ("objective", pa.string()),
        ("metric", pa.string()),
        # own_margin: quartiles of the own-stage margin the change starts from; other_seed: of another
        # seed's own-stage margins on the same pairs (the regression-to-the-mean check, seqpref.transfer)
        ("assignment", pa.string()),
        # correlation (mean over seeds) of the binning margins with the margins the change starts from:
        # 1 for own_margin; for other_seed the seeds' agreement, which also flattens a real pattern
        ("binning_correlation", pa.float64()),
        ("own_stage", pa.int64()),
        ("stage", pa.int64()),  # a later stage
        ("quartile", pa.int64()),  # 1 = lowest own-stage margin ... 4 = highest
        ("n", pa.int64()),
        ("own_margin_min", pa.float64()),  # range of the margins the quartile was assigned on
        ("own_margin_max", pa.float64()),
    ]
    + _ci_columns("mean_change")  # metric(stage) - metric(own stage), mean over the quartile
    + [
        ("share_fell", pa.float64()),
        ("share_flipped", pa.float64()),  # sign of the margin differs from the own stage's
    ]
)

#: one logged training metric at one optimiser step (train_stage → collect_training)
TRAINING = pa.schema(
    [
        ("setting", pa.string()),
        ("method", pa.string()),
        ("order", pa.string()),
        ("seed", pa.int64()),
        ("stage", pa.int64()),
        ("objective", pa.string()),
        ("step", pa.int64()),  # optimiser step within the stage, from 1
        ("metric", pa.string()),  # TRL's log key: loss, rewards/margins, ...
        ("value", pa.float64()),
    ]
)


def write_table(frame: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema, provenance: dict) -> None:
    """Write ``frame`` to Parquet at ``path`` with exactly ``schema``'s columns and ``provenance``.

    Raises ``ValueError`` naming the columns that are missing from, or extra to, the schema. The file
    is written to a temporary name and renamed, so a failed job never leaves a half-written table.
    """
    missing = [name for name in schema.names if name not in frame.columns]
    extra = [name for name in frame.columns if name not in schema.names]
    if missing or extra:
        raise ValueError(f"{path}: columns missing {missing}, not in the schema {extra}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    meta = {**(table.schema.metadata or {}), PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_provenance(path: str | os.PathLike) -> dict:
    """Return the provenance dict stored in a seqpref Parquet file's schema metadata."""
    return json.loads(pq.read_schema(path).metadata[PROVENANCE_KEY])


def read_tables(paths, columns: list[str] | None = None) -> pd.DataFrame:
    """Read and concatenate Parquet files (same schema) into one DataFrame, in the order given."""
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        raise ValueError("no tables to read")
    return pa.concat_tables(tables, promote_options="default").to_pandas()


#: gradient diagnostics of one stage ≥ 2: the current objective's LoRA gradient against each
#: earlier objective's, every ``diagnostics.every`` optimiser steps (train_stage → aggregate)
DIAGNOSTICS = pa.schema(
    _RUN_KEYS[:5]
    + [
        ("objective", pa.string()),  # trained at this stage
        ("step", pa.int64()),  # optimiser step within the stage
        # cross: the step's gradient vs an earlier objective's probe batch A; floor_current: the step's
        # gradient vs another batch of the current objective (none of the step's pairs); floor_other: an
        # earlier objective's batch A vs its disjoint batch B; cross_step: the gradient the optimiser applied vs
        # batch A, where the probe recomputed the current one (dropout on, a method term, replayed pairs; seqpref.diagnostics)
        ("kind", pa.string()),
        ("other_objective", pa.string()),  # the earlier objective (the current one for floor_current)
        ("other_stage", pa.int64()),
        ("cosine", pa.float64()),  # over all LoRA parameters
        ("norm_current", pa.float64()),  # ‖first gradient‖₂: the step's (before clipping), or batch B's for floor_other
        ("norm_other", pa.float64()),  # ‖second gradient‖₂
        ("n_current", pa.int64()),  # pairs behind the first gradient (the step's: batch size × accumulation)
        ("n_other", pa.int64()),  # pairs behind the second
        ("seconds", pa.float64()),  # time spent on this probe, shared equally by its rows
    ]
)

#: adapter movement: the effective update ΔW = (α/r)·B·A of each LoRA module after each stage
MOVEMENT = pa.schema(
    _RUN_KEYS[:5]
    + [
        ("objective", pa.string()),  # trained at this stage
        ("module", pa.string()),  # e.g. model.layers.0.self_attn.q_proj, or "all" (every module)
        ("update_norm", pa.float64()),  # ‖ΔW_k − ΔW_{k−1}‖_F: what this stage changed
        ("total_norm", pa.float64()),  # ‖ΔW_k‖_F: the adapter after this stage
        ("cosine_previous", pa.float64()),  # cos(update of stage k, update of stage k−1); NaN at stage 1
    ]
)
