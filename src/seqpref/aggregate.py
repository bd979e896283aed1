"""Pair scores → tables: every scored pair (``pairs.parquet``); one row per run × stage × objective,
seeds pooled (``summary.parquet``) with means, seed-and-pair CIs (:func:`seqpref.stats.crossed_interval`),
changes from the previous stage and a label;
backward / forward transfer per run and objective (``transfer.parquet``); and the quartile
decomposition (``quartiles.parquet``).

Reads Parquet only (never a model). ``python -m seqpref.aggregate summary --pairs P --summary S
--transfer T --quartiles Q --options JSON SCORE.parquet...`` and ``python -m seqpref.aggregate collect {training,diagnostics,movement} OUT PART.parquet...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqpref import metrics, plan, provenance, stats, tables, transfer
from seqpref.options import LabelOptions

log = logging.getLogger("seqpref.aggregate")

RUN_KEYS = ["setting", "method", "order", "seed"]
GROUP_KEYS = ["setting", "method", "order", "objective"]  # what a summary row pools over seeds
METRICS = ["reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"]
CHANGE_METRICS = ["reward_margin", "rel_accuracy", "ln_margin"]


def _matrices(group: pd.DataFrame) -> tuple[list[int], dict[str, np.ndarray]]:
    """Stages of one objective's pair scores within one run (every seed) and its
    ``(n_seeds, n_pairs, n_stages)`` array per metric, from one pivot; raises if a pair is missing
    at some (seed, stage)."""
    stages = sorted(group["stage"].unique())
    seeds = sorted(group["seed"].unique())
    if stages != list(range(len(stages))):
        raise ValueError(f"stages must run 0..K without gaps, got {stages}")
    group = group.assign(rel_accuracy=metrics.correct(group["reward_margin"].to_numpy()))
    wide = group.pivot(index="pair_id", columns=["seed", "stage"], values=METRICS)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([METRICS, seeds, stages]))
    if wide.isna().any().any():
        missing = sorted({(int(seed), int(stage)) for _, seed, stage in wide.columns[wide.isna().any()]})
        raise ValueError(f"some pairs are not scored at (seed, stage) {missing}")
    shape = (len(wide), len(seeds), len(stages))
    return stages, {m: wide[m].to_numpy().reshape(shape).transpose(1, 0, 2) for m in METRICS}


def change_label(
    role: str,
    changes: np.ndarray | None,
    own_gain: float,
    options: LabelOptions,
    interval: dict | None = None,
    heterogeneity: dict | None = None,
    threshold: float | None = None,
) -> str | None:
    """The label of one objective's change at one stage of one run.

    ``role`` is :func:`seqpref.plan.role`'s; ``changes`` the ``(n_seeds, n_pairs)`` table of each pair's
    change in the label metric since the previous stage; ``own_gain`` the objective's own-stage gain
    (NaN where it has none yet). ``interval`` (:func:`seqpref.stats.crossed_interval` of ``changes``)
    and ``heterogeneity`` (:func:`seqpref.stats.pair_heterogeneity`) may be passed when already computed.

    None at stage 0; ``trained`` wherever the stage trains the objective (alone, jointly or replayed:
    :data:`seqpref.plan.TRAINED_ROLES`); else ``degradation`` / ``positive_transfer`` when the change's
    interval excludes 0 and |change| ≥ :func:`seqpref.stats.label_threshold`; else ``redistribution``
    when pairs move both ways beyond the runs' own noise (needs ≥ 2 seeds: the F test of the pair
    effect rejects at the label's level and ≥ ``redistribution_share`` of pairs lie beyond the noise band
    each way, by ≥ ``pair_move``); else ``stable``."""
    if role == "base":
        return None
    if role in plan.TRAINED_ROLES:
        return "trained"
    interval = interval or stats.crossed_interval(changes, options.confidence)
    if threshold is None:
        threshold = stats.label_threshold(own_gain, options.min_share, options.min_effect)
    label = stats.label_change(interval["mean"], interval["lo"], interval["hi"], threshold)
    if label != "stable":
        return label
    heterogeneity = heterogeneity or stats.pair_heterogeneity(changes, options.confidence, options.pair_move)
    if (
        heterogeneity["p_value"] < 1.0 - options.confidence
        and min(heterogeneity["share_up"], heterogeneity["share_down"]) >= options.redistribution_share
    ):
        return "redistribution"
    return "stable"


def own_gain_shares(values: np.ndarray, roles: list[str], own_stage: int, options: LabelOptions) -> dict:
    """What each stage's change is as a share of what the objective gained in its own stage, and the
    label threshold that gain sets.

    ``values`` is the label metric's ``(n_seeds, n_pairs, n_stages)`` table, ``roles`` each stage's
    :func:`seqpref.plan.role`. For a stage k after the own stage where the objective is not trained
    (an ``earlier`` objective of a sequential run): ``share`` = (m_k − m_{k−1}) / (m_own − m_{own−1}),
    with Fieller's interval under the seed-and-pair variance (:func:`seqpref.stats.fieller_interval`),
    NaN where that interval is unbounded (the own gain is not distinguishable from 0: a share of ~0
    means nothing). ``threshold`` = :func:`seqpref.stats.label_threshold` of the own gain (continuous in
    it) and ``criterion`` ``relative`` where min_share · gain sets it, else ``absolute`` (min_effect).
    Returns arrays ``(n_stages,)``: ``own_gain`` (metric units), ``share``, ``share_lo``, ``share_hi``,
    ``threshold``, ``criterion``."""
    n = values.shape[2]
    out = {key: np.full(n, np.nan) for key in ("own_gain", "share", "share_lo", "share_hi")}
    out["threshold"] = np.full(n, stats.label_threshold(float("nan"), options.min_share, options.min_effect))
    out["criterion"] = np.array(["absolute"] * n, dtype=object)
    if own_stage < 1 or own_stage >= n:
        return out
    gain_table = values[:, :, own_stage] - values[:, :, own_stage - 1]
    gain = float(gain_table.mean())
    for k in range(own_stage + 1, n):
        if roles[k] != "earlier":
            continue
        out["own_gain"][k] = gain
        share = stats.fieller_interval(values[:, :, k] - values[:, :, k - 1], gain_table, options.confidence)
        if np.isfinite(share["lo"]):
            out["share"][k], out["share_lo"][k], out["share_hi"][k] = share["ratio"], share["lo"], share["hi"]
        out["threshold"][k] = stats.label_threshold(gain, options.min_share, options.min_effect)
        if options.min_share is not None and options.min_share * gain > options.min_effect:
            out["criterion"][k] = "relative"
    return out


def summarise_objective(group: pd.DataFrame, options: LabelOptions, matrices=None) -> pd.DataFrame:
    """Summary rows (one per stage) of one objective within one run, its seeds pooled.

    ``group`` holds that objective's pair scores at every stage of the run, for every seed
    (PAIR_SCORES columns). Every level and change has the seed-and-pair interval of
    :func:`seqpref.stats.crossed_interval` (pairs only with one seed: ``interval_covers`` says which).
    """
    stages, matrices = matrices or _matrices(group)
    n_seeds, n_pairs, _ = matrices["reward_margin"].shape
    first = group.iloc[0]
    rows = pd.DataFrame({"stage": stages})
    rows["n"] = n_pairs
    rows["n_seeds"] = n_seeds
    rows["interval_covers"] = stats.covers(n_seeds)
    per_seed = matrices["reward_margin"].mean(axis=1)  # (n_seeds, n_stages)
    rows["reward_margin_seed_sd"] = per_seed.std(axis=0, ddof=1) if n_seeds > 1 else np.nan
    for metric in METRICS:
        ci = stats.stage_intervals(matrices[metric], options.confidence)
        rows[metric], rows[f"{metric}_lo"], rows[f"{metric}_hi"] = ci["mean"], ci["lo"], ci["hi"]
        if metric in CHANGE_METRICS or metric == options.metric:
            rows[f"{metric}_change"] = ci["change"]
            rows[f"{metric}_change_lo"] = ci["change_lo"]
            rows[f"{metric}_change_hi"] = ci["change_hi"]
    label_values = matrices[options.metric]
    steps = np.diff(label_values, axis=2)  # (n_seeds, n_pairs, n_stages - 1): each pair's change
    moves = [
        stats.pair_heterogeneity(steps[:, :, k], options.confidence, options.pair_move) for k in range(steps.shape[2])
    ]
    nan = [np.nan]
    rows["share_up"] = nan + [m["share_up"] for m in moves]
    rows["share_down"] = nan + [m["share_down"] for m in moves]
    rows["pair_effect_p"] = nan + [m["p_value"] for m in moves]
    for key in GROUP_KEYS:
        rows[key] = first[key]
    order, method = first["order"], first["method"]
    rows["trained_objective"] = [plan.trained_at(method, order, s) for s in stages]
    rows["role"] = [plan.role(first["objective"], order, s, method) for s in stages]
    rows["label_metric"] = options.metric
    own_stage = plan.own_stage(first["objective"], order, method)
    relative = own_gain_shares(label_values, list(rows["role"]), own_stage, options)
    rows["own_gain"] = relative["own_gain"]
    rows["share_of_own_gain"], rows["share_of_own_gain_lo"], rows["share_of_own_gain_hi"] = (
        relative["share"],
        relative["share_lo"],
        relative["share_hi"],
    )
    rows["label_threshold"] = relative["threshold"]
    rows["label_criterion"] = relative["criterion"]
    labels = []
    for k, role in enumerate(rows["role"]):
        if k == 0 or role in plan.TRAINED_ROLES:
            labels.append(change_label(role, None, np.nan, options))
            continue
        interval = {
            "mean": rows.at[k, f"{options.metric}_change"],
            "lo": rows.at[k, f"{options.metric}_change_lo"],
            "hi": rows.at[k, f"{options.metric}_change_hi"],
        }
        labels.append(
            change_label(
                role,
                steps[:, :, k - 1],
                rows.at[k, "own_gain"],
                options,
                interval,
                moves[k - 1],
                threshold=rows.at[k, "label_threshold"],
            )
        )
    rows["label"] = labels
    return rows


def _run_columns(first, n_seeds: int, objective_rows: list[dict], metric: str) -> list[dict]:
    keys = {key: first[key] for key in GROUP_KEYS}
    return [{**keys, "n_seeds": n_seeds, "metric": metric, **row} for row in objective_rows]


def summarise(pairs: pd.DataFrame, options: LabelOptions) -> dict[str, pd.DataFrame]:
    """The ``summary``, ``transfer`` and ``quartiles`` tables of every run × objective in ``pairs``,
    the seeds of a run pooled (CIs over seeds and pairs).

    Each objective's pairs are pivoted to (seed, pair, stage) arrays once and every table is computed
    from them. Every run of a group must have the same eval pairs (they differ only in the seed).
    """
    summary, transfer_rows, quartile_rows = [], [], []
    for _, group in pairs.groupby(GROUP_KEYS, sort=True, observed=True):
        stages, matrices = _matrices(group)
        n_seeds = matrices["reward_margin"].shape[0]
        summary.append(summarise_objective(group, options, (stages, matrices)))
        first = group.iloc[0]
        own_stage = plan.own_stage(first["objective"], first["order"], first["method"])
        for metric in CHANGE_METRICS:
            row = transfer.backward_forward(matrices[metric], own_stage, confidence=options.confidence)
            transfer_rows += _run_columns(first, n_seeds, [row], metric)
        # quartiles on the margin the change starts from, and (≥ 2 seeds) on another seed's: the RTM check
        for assignment in transfer.ASSIGNMENTS[: 2 if n_seeds > 1 else 1]:
            rows = transfer.quartile_rows(matrices[options.metric], own_stage, options.confidence, assignment)
            quartile_rows += _run_columns(first, n_seeds, rows, options.metric)
    frame = pd.concat(summary, ignore_index=True)
    for column in tables.SUMMARY.names:  # change columns of metrics that are not tracked stay NaN
        if column not in frame.columns:
            frame[column] = np.nan
    return {
        "summary": frame[tables.SUMMARY.names],
        "transfer": pd.DataFrame(transfer_rows, columns=tables.TRANSFER.names),
        "quartiles": pd.DataFrame(quartile_rows, columns=tables.QUARTILES.names),
    }


def summary_tables(
    score_paths: list[str],
    outputs: dict[str, str],
    options: LabelOptions,
    sham_paths: list[str] | None = None,
    sham_logs: list[str] | None = None,
    stage_logs: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Concatenate score files into ``outputs["pairs"]`` and write the ``summary``, ``transfer``,
    ``quartiles`` and ``controls`` tables to their paths in ``outputs``; returns the frames.

    The controls come from the sham stages' score files ``sham_paths`` (empty without them); with the
    training logs of the shams (``sham_logs``) and of the stages they sham (``stage_logs``), the table
    also says how far each moved the adapter."""
    from seqpref import controls

    pairs = tables.read_tables(score_paths)
    duplicated = pairs.duplicated(RUN_KEYS + ["stage", "objective", "pair_id"])
    if duplicated.any():
        raise ValueError(f"{int(duplicated.sum())} pair scores appear twice in the score files")
    record = provenance.provenance("aggregate", {"labels": asdict(options), "inputs": len(score_paths)})
    frames = summarise(pairs, options)
    sham = tables.read_tables(sham_paths) if sham_paths else None
    movement = None
    if sham_logs and stage_logs:
        movement = pd.concat(
            [
                controls.change_norms(tables.read_tables(stage_logs), "real"),
                controls.change_norms(tables.read_tables(sham_logs), "sham"),
            ],
            ignore_index=True,
        )
    frames["controls"] = (
        controls.control_rows(pairs, sham, frames["summary"], options, movement)
        if sham is not None
        else pd.DataFrame(columns=tables.CONTROLS.names)
    )
    tables.write_table(pairs, outputs["pairs"], tables.PAIR_SCORES, record)
    for name, schema in (
        ("summary", tables.SUMMARY),
        ("transfer", tables.TRANSFER),
        ("quartiles", tables.QUARTILES),
        ("controls", tables.CONTROLS),
    ):
        tables.write_table(frames[name], outputs[name], schema, record)
    return frames


COLLECTED = {"training": tables.TRAINING, "diagnostics": tables.DIAGNOSTICS, "movement": tables.MOVEMENT}


def collect_table(name: str, paths: list[str], out: str) -> pd.DataFrame:
    """Concatenate per-job tables of kind ``name`` (training, diagnostics, movement) into ``out``; returns it."""
    schema = COLLECTED[name]
    frame = pa.concat_tables([pq.read_table(p, schema=schema) for p in paths]).to_pandas() if paths else None
    if frame is None:
        raise ValueError(f"no {name} tables to collect")
    tables.write_table(frame, out, schema, provenance.provenance(f"collect_{name}", {"inputs": len(paths)}))
    return frame


def main(argv=None) -> None:
    """CLI: ``summary`` (aggregate rule) or ``collect`` (the collect_* rules)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary")
    for name in ("pairs", "summary", "transfer", "quartiles", "controls"):
        summary.add_argument(f"--{name}", required=True, help=f"{name} table to write")
    summary.add_argument("scores", nargs="+")
    summary.add_argument("--sham", nargs="*", default=[], help="score files of the sham stages (controls.sham)")
    summary.add_argument("--sham-logs", nargs="*", default=[], help="training logs of the sham stages")
    summary.add_argument("--stage-logs", nargs="*", default=[], help="training logs of the stages they sham")
    summary.add_argument("--options", default="{}", help="JSON of LabelOptions")
    collect = commands.add_parser("collect")
    collect.add_argument("kind", choices=sorted(COLLECTED))
    collect.add_argument("out")
    collect.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "summary":
        outputs = {name: getattr(args, name) for name in ("pairs", "summary", "transfer", "quartiles", "controls")}
        frames = summary_tables(
            args.scores, outputs, LabelOptions(**json.loads(args.options)), args.sham, args.sham_logs, args.stage_logs
        )
        frame = frames["summary"]
        labels = frame["label"].value_counts().to_dict()
        log.info("%d score files -> %d summary rows; labels %s", len(args.scores), len(frame), labels)
    else:
        frame = collect_table(args.kind, args.paths, args.out)
        log.info("%d %s tables -> %d rows", len(args.paths), args.kind, len(frame))


if __name__ == "__main__":
    main()
