"""Pair scores → tables: every scored pair (``pairs.parquet``); one row per run × stage × objective,
seeds pooled (``summary.parquet``) with means, paired-bootstrap CIs, changes from the previous stage and a label;
backward / forward transfer per run and objective (``transfer.parquet``); and the quartile
decomposition (``quartiles.parquet``).

Reads Parquet only (never a model). ``python -m seqpref.aggregate summary --pairs P --summary S
--transfer T --quartiles Q --options JSON SCORE.parquet...`` and ``python -m seqpref.aggregate collect {training,diagnostics,movement} OUT PART.parquet...``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqpref import metrics, plan, provenance, stats, tables, transfer

log = logging.getLogger("seqpref.aggregate")

RUN_KEYS = ["setting", "method", "order", "seed"]
GROUP_KEYS = ["setting", "method", "order", "objective"]  # what a summary row pools over seeds
METRICS = ["reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"]
CHANGE_METRICS = ["reward_margin", "rel_accuracy", "ln_margin"]
LABEL_METRICS = ["reward_margin", "dpo_margin", "ln_margin", "rel_accuracy"]


@dataclass
class LabelOptions:
    """How changes are labelled (``labels`` in the config)."""

    metric: str = "reward_margin"  # whose change is labelled
    # an earlier objective that demonstrably learned in its own stage (gain CI > 0) is judged relative
    # to that gain: |change| below min_share · gain is ``stable`` even when the CI excludes 0
    min_share: float | None = 0.1
    min_effect: float = 0.25  # otherwise (no own gain to scale by, or min_share None): |change| below this is ``stable``
    pair_move: float = 0.5  # a pair "moved" when its own change exceeds this (metric units)
    redistribution_share: float = 0.2  # stable, but ≥ this share moved up AND down: redistribution
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.metric not in LABEL_METRICS:
            raise ValueError(f"labels.metric must be one of {LABEL_METRICS}, got {self.metric!r}")
        if self.min_effect < 0 or not 0 < self.confidence < 1 or self.n_boot < 100:
            raise ValueError("labels: need min_effect ≥ 0, 0 < confidence < 1 and n_boot ≥ 100")
        if self.min_share is not None and not 0 < self.min_share <= 1:
            raise ValueError(f"labels.min_share must be in (0, 1] or null, got {self.min_share}")
        if self.pair_move <= 0 or not 0 < self.redistribution_share <= 0.5:
            raise ValueError("labels: need pair_move > 0 and 0 < redistribution_share ≤ 0.5")


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


def _label(role: str, change: float, lo: float, hi: float, up: float, down: float, threshold: float,
           options: LabelOptions):
    if role == "base":
        return None
    if role == "trained":
        return "trained"
    label = stats.label_change(change, lo, hi, threshold)
    if label == "stable" and min(up, down) >= options.redistribution_share:
        return "redistribution"
    return label


def own_gain_shares(boot: np.ndarray, means: np.ndarray, roles: list[str], own_stage: int, options: LabelOptions) -> dict:
    """What each stage's change is as a share of what the objective gained in its own stage.

    ``boot`` ``(n_boot, n_stages)`` and ``means`` ``(n_stages,)`` are the label metric's resampled and
    point stage means, ``roles`` each stage's :func:`seqpref.plan.role`. For a stage k after the own
    stage — an ``earlier`` objective of a sequential run, or any objective of a joint run (whose own
    stage is 1) — ``share`` = (m_k − m_{k−1}) / (m_own − m_{own−1}), with a percentile CI from the same
    resamples (the ratio per resample, so paired), reported only where the objective demonstrably
    learned (the gain's CI lies above 0; NaN otherwise, where a ratio to a gain of ~0 means nothing).
    Returns arrays ``(n_stages,)``: ``own_gain`` (metric units), ``share``, ``share_lo``, ``share_hi``,
    and the label ``threshold`` and ``criterion`` per stage: ``relative`` where the share is reported —
    min_share · own gain, never below min_share · min_effect (a gain of 0.03 nats would otherwise make
    a 0.003-nat wobble a label) — else ``absolute`` (min_effect: an untrained objective, one that
    learned nothing measurable, or ``min_share: null``).
    """
    n = len(means)
    out = {key: np.full(n, np.nan) for key in ("own_gain", "share", "share_lo", "share_hi")}
    out["threshold"] = np.full(n, options.min_effect)
    out["criterion"] = np.array(["absolute"] * n, dtype=object)
    if own_stage < 1 or own_stage >= n:
        return out
    gain, boot_gain = means[own_stage] - means[own_stage - 1], boot[:, own_stage] - boot[:, own_stage - 1]
    gain_lo, _ = stats.percentile_ci(boot_gain, options.confidence)
    for k in range(own_stage + 1, n):
        if roles[k] not in ("earlier", plan.JOINT):
            continue
        out["own_gain"][k] = gain
        if gain_lo <= 0:
            continue
        out["share"][k] = (means[k] - means[k - 1]) / gain
        out["share_lo"][k], out["share_hi"][k] = stats.ratio_ci(boot[:, k] - boot[:, k - 1], boot_gain, options.confidence)
        if options.min_share is not None:
            threshold = max(options.min_share * gain, options.min_share * options.min_effect)
            out["threshold"][k], out["criterion"][k] = threshold, "relative"
    return out


def summarise_objective(group: pd.DataFrame, options: LabelOptions, matrices=None, indices=None, boots=None) -> pd.DataFrame:
    """Summary rows (one per stage) of one objective within one run, its seeds pooled.

    ``group`` holds that objective's pair scores at every stage of the run, for every seed
    (PAIR_SCORES columns). Every metric and change is bootstrapped with the same resamples of seeds
    and pairs (paired across stages). ``boots`` (a dict) receives each metric's ``(n_boot,
    n_stages)`` resampled means for reuse.
    """
    stages, matrices = matrices or _matrices(group)
    n_seeds, n_pairs, _ = matrices["reward_margin"].shape
    if indices is None:
        indices = stats.Resampler.draw(n_pairs, options.n_boot, options.seed, n_seeds)
    first = group.iloc[0]
    rows = pd.DataFrame({"stage": stages})
    rows["n"] = n_pairs
    rows["n_seeds"] = n_seeds
    per_seed = matrices["reward_margin"].mean(axis=1)  # (n_seeds, n_stages)
    rows["reward_margin_seed_sd"] = per_seed.std(axis=0, ddof=1) if n_seeds > 1 else np.nan
    ci_boot = {}
    for metric in METRICS:
        # the same seed for every metric: one set of resamples, so all CIs are paired
        ci = stats.paired_stage_ci(matrices[metric], options.n_boot, options.confidence, options.seed, indices)
        ci_boot[metric] = ci["boot"]
        if boots is not None:
            boots[metric] = ci["boot"]
        rows[metric], rows[f"{metric}_lo"], rows[f"{metric}_hi"] = ci["mean"], ci["lo"], ci["hi"]
        if metric in CHANGE_METRICS or metric == options.metric:
            rows[f"{metric}_change"] = ci["change"]
            rows[f"{metric}_change_lo"] = ci["change_lo"]
            rows[f"{metric}_change_hi"] = ci["change_hi"]
    steps = np.diff(matrices[options.metric], axis=2)  # (n_seeds, n_pairs, n_stages - 1): each pair's change
    nan = [np.nan]
    rows["share_up"] = nan + list((steps > options.pair_move).mean(axis=(0, 1)))
    rows["share_down"] = nan + list((steps < -options.pair_move).mean(axis=(0, 1)))
    for key in GROUP_KEYS:
        rows[key] = first[key]
    order, method = first["order"], first["method"]
    rows["trained_objective"] = [plan.trained_at(method, order, s) for s in stages]
    rows["role"] = [plan.role(first["objective"], order, s, method) for s in stages]
    rows["label_metric"] = options.metric
    own_stage = plan.own_stage(first["objective"], order, method)
    relative = own_gain_shares(ci_boot[options.metric], rows[options.metric].to_numpy(), list(rows["role"]), own_stage, options)
    rows["own_gain"] = relative["own_gain"]
    rows["share_of_own_gain"], rows["share_of_own_gain_lo"], rows["share_of_own_gain_hi"] = (
        relative["share"], relative["share_lo"], relative["share_hi"])
    rows["label_threshold"] = relative["threshold"]
    rows["label_criterion"] = relative["criterion"]
    rows["label"] = [
        _label(*values, options)
        for values in zip(
            rows["role"],
            rows[f"{options.metric}_change"],
            rows[f"{options.metric}_change_lo"],
            rows[f"{options.metric}_change_hi"],
            rows["share_up"],
            rows["share_down"],
            rows["label_threshold"],
        )
    ]
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
        n_seeds, n_pairs, _ = matrices["reward_margin"].shape
        # one set of seed and pair resamples per objective and run, shared by every table (all CIs paired)
        indices = stats.Resampler.draw(n_pairs, options.n_boot, options.seed, n_seeds)
        boots: dict[str, np.ndarray] = {}
        summary.append(summarise_objective(group, options, (stages, matrices), indices, boots))
        first = group.iloc[0]
        own_stage = plan.own_stage(first["objective"], first["order"], first["method"])
        for metric in CHANGE_METRICS:
            row = transfer.backward_forward(matrices[metric], own_stage, confidence=options.confidence, boot=boots[metric])
            transfer_rows += _run_columns(first, n_seeds, [row], metric)
        # quartiles on the margin the change starts from, and (≥ 2 seeds) on another seed's: the RTM check
        for assignment in transfer.ASSIGNMENTS[: 2 if n_seeds > 1 else 1]:
            rows = transfer.quartile_rows(matrices[options.metric], own_stage, confidence=options.confidence,
                                          indices=indices, assignment=assignment)
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


def summary_tables(score_paths: list[str], outputs: dict[str, str], options: LabelOptions,
                   sham_paths: list[str] | None = None, sham_logs: list[str] | None = None,
                   stage_logs: list[str] | None = None) -> dict[str, pd.DataFrame]:
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
        movement = pd.concat([controls.change_norms(tables.read_tables(stage_logs), "real"),
                              controls.change_norms(tables.read_tables(sham_logs), "sham")], ignore_index=True)
    frames["controls"] = (controls.control_rows(pairs, sham, frames["summary"], options, movement) if sham is not None
                          else pd.DataFrame(columns=tables.CONTROLS.names))
    tables.write_table(pairs, outputs["pairs"], tables.PAIR_SCORES, record)
    for name, schema in (("summary", tables.SUMMARY), ("transfer", tables.TRANSFER), ("quartiles", tables.QUARTILES),
                         ("controls", tables.CONTROLS)):
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
        frames = summary_tables(args.scores, outputs, LabelOptions(**json.loads(args.options)), args.sham,
                                args.sham_logs, args.stage_logs)
        frame = frames["summary"]
        labels = frame["label"].value_counts().to_dict()
        log.info("%d score files -> %d summary rows; labels %s", len(args.scores), len(frame), labels)
    else:
        frame = collect_table(args.kind, args.paths, args.out)
        log.info("%d %s tables -> %d rows", len(args.paths), args.kind, len(frame))


if __name__ == "__main__":
    main()
