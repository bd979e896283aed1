"""The sham stage: the control that tells preference interference from drift.

A change in an earlier objective after stage k may come from stage k's *preferences* or from any
further training on stage k's prompts and responses (likelihood drift that moves margins whatever
the labels say). The sham stage k trains as stage k does — same prompts, responses, steps, LoRA,
method, continuing the same stage k−1 adapter — on stage k's train pairs with chosen and rejected
swapped for a seeded random half (``n // 2`` pairs), so that its preference signal cancels on average
while everything else stays. The earlier objective's change under the real stage minus its change
under the sham is the *specific* effect of stage k's preferences.

A sham is a valid null only when it is neutral (it does not teach stage k's preference) and moves the
adapter as far as the real stage (drift grows with distance); :func:`control_validity` checks both
where the control is read. Two choices make it valid more often (``controls`` in the config):

* ``sham_match_distance: true`` (default): the half-swapped labels cancel most of the gradient, so at
  the stage's learning rate the sham moves the adapter a fraction as far (the lab: 0.3–0.5×); a pilot
  run measures that fraction and the sham proper trains at the learning rate scaled by its inverse
  (:func:`match_distance`), which doubles the sham's training. This is what makes the lab's controls
  valid (7 of 20 shams before, 16 of 20 after).
* ``sham_design``: ``half_swap`` (default) keeps the base model as the sham's DPO reference, as the real
  stage's; ``previous_reference`` uses the stage k−1 model's log-probs of the sham's pairs (the
  ``sham_reference`` rule), so that every sham pair starts at margin 0 and neither half starts
  saturated. Measured, it gave no more valid controls, and on the real model its residual pushed the
  sham toward stage k−1's preference (every sham), which makes ``specific`` overstate a degradation;
  the half-swap's residual there pushes toward stage k's preference, which understates it.

``benchmarks/sham_designs.py`` compares the designs' neutrality and distance on finished studies.

``python -m seqpref.controls sham PAIRS BASE_LOGPS OUT_PAIRS OUT_LOGPS --seed S`` (the ``prepare_sham``
rule) writes the sham's train pairs and their base log-probs (swapped with them).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from seqpref.options import CHANGE_NORM

log = logging.getLogger("seqpref.controls")

#: salt of the sham's random stream, so that its halves are not those of any other draw from the seed
SHAM_SALT = 0x5A4A


def sham_half(pair_ids, seed: int) -> np.ndarray:
    """Which pairs the sham swaps: a bool ``(n,)`` with exactly ``n // 2`` True, drawn from ``seed``.

    The draw depends on the sorted pair ids, not their row order, so the same pairs are swapped however
    the file is ordered.
    """
    ids = np.asarray(pair_ids, dtype=object)
    order = np.argsort(ids, kind="stable")
    chosen = np.random.default_rng([seed, SHAM_SALT]).permutation(len(ids))[: len(ids) // 2]
    swapped = np.zeros(len(ids), dtype=bool)
    swapped[order[chosen]] = True
    return swapped


def sham_pairs(
    pairs: pd.DataFrame, base_logps: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The sham stage's train pairs and base log-probs: for :func:`sham_half`'s pairs, chosen and
    rejected (texts, and the base log-probs, token counts with them) trade places.

    Takes a PAIRS frame and its LOGPS frame; returns both, swapped, and the swapped mask of ``pairs``'
    rows. Every pair must have base log-probs (an error names the missing ones).
    """
    swapped = sham_half(pairs["pair_id"], seed)
    out = pairs.copy()
    out.loc[swapped, ["chosen", "rejected"]] = pairs.loc[swapped, ["rejected", "chosen"]].to_numpy()
    flipped = set(pairs.loc[swapped, "pair_id"])
    missing = sorted(set(pairs["pair_id"]) - set(base_logps["pair_id"]))
    if missing:
        raise ValueError(f"{len(missing)} train pairs have no base log-probs, e.g. {missing[:5]}")
    logps = base_logps.copy()
    rows = logps["pair_id"].isin(flipped).to_numpy()
    for a, b in (("logp_chosen", "logp_rejected"), ("n_tokens_chosen", "n_tokens_rejected")):
        logps.loc[rows, [a, b]] = base_logps.loc[rows, [b, a]].to_numpy()
    return out, logps, swapped


#: where a distance-matched sham keeps its learning-rate scale while it trains (removed with its checkpoints)
DISTANCE_MATCH = "distance_match.json"


def real_change_norm(train_log_path: str) -> float:
    """‖θ_after − θ_before‖₂ of a stage's LoRA parameters, read from its training log (TRAINING Parquet)."""
    log = pd.read_parquet(train_log_path)
    values = log.loc[log["metric"] == CHANGE_NORM, "value"]
    if len(values) != 1:
        raise ValueError(f"{train_log_path}: expected one {CHANGE_NORM} row, found {len(values)}")
    return float(values.iloc[0])


def match_distance(
    pilot, real_train_log: str, out_dir: str, checkpoint_dir: str | None = None, inputs: dict | None = None
) -> tuple[float, dict]:
    """The learning-rate scale that makes a sham move its adapter as far as the real stage did.

    The sham's half-swapped labels cancel most of the preference gradient, so at the real stage's learning
    rate it moves the adapter a fraction as far (the lab: 0.3–0.5×), and drift that grows with distance is
    under-counted. Adam's step is close to proportional to the learning rate, so one pilot at the configured
    rate, ``pilot(out_dir, log_path) -> change norm``, gives the scale ‖Δθ_real‖ / ‖Δθ_pilot‖ for the sham
    proper (``controls.sham_match_distance``; the controls table still checks the distance it reached). The
    pilot trains in a scratch folder beside ``out_dir``, removed after; with ``checkpoint_dir`` the scale is
    kept there, so that a resumed sham does not run its pilot again — only while the real stage's distance
    and ``inputs`` (what the pilot trained from: options, previous adapter, data) are those it was
    measured for. Returns ``(scale, record)``: the record (target, pilot's norm, scale, inputs) goes into
    the sham adapter's ``training_options.json``.
    """
    import gc
    import json
    import shutil
    import tempfile
    from pathlib import Path

    import torch

    target = real_change_norm(real_train_log)
    inputs = json.loads(json.dumps(inputs or {}, default=str))
    saved = Path(checkpoint_dir) / DISTANCE_MATCH if checkpoint_dir else None
    if saved is not None and saved.is_file():
        record = json.loads(saved.read_text())
        if record.get("target_change_norm") == target and record.get("inputs") == inputs:
            log.info("distance match from %s: %s", saved, record)
            return record["lr_scale"], {"distance_match": record}
        log.info("%s was measured for another real stage or other inputs: a new pilot", saved)
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pilot-", dir=Path(out_dir).parent))
    try:
        reached = pilot(str(scratch / "adapter"), str(scratch / "train_log.parquet"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        gc.collect()  # the pilot's model and optimiser, before the sham proper loads its own
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    record = {
        "target_change_norm": target,
        "pilot_change_norm": reached,
        "lr_scale": target / reached,
        "inputs": inputs,
    }
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(record))
    log.info(
        "distance match: the pilot moved %.4g, the real stage %.4g: learning rate x %.3g",
        reached,
        target,
        record["lr_scale"],
    )
    return record["lr_scale"], {"distance_match": record}


#: what a control label says (``control_label`` in tables/controls.parquet)
CONTROL_LABELS = {
    "specific_degradation": "the objective ends lower after the real stage than after the sham (the difference's CI "
    "is below 0 and it passes the label threshold): stage k's preferences lowered it beyond "
    "what training on the same text without a net preference did",
    "specific_transfer": "it ends higher after the real stage than after the sham: a preference-specific gain",
    "drift": "the real stage's change is labelled, the sham's change is labelled alike, and the difference is shown "
    "to be small (its CI lies within ± the label threshold): training on that text moves the objective "
    "whatever the labels",
    "inconclusive": "the real stage's change is labelled, but the difference from the sham is neither shown to be "
    "specific nor shown to be small, or the sham moved the objective the other way",
    "stable": "neither the real stage's change nor the difference from the sham is labelled",
    "control_invalid": "the sham is no null here, so no control label is given (control_invalid_reason says why): "
    "it moved its own objective by more than labels.sham_own_tolerance of what the real stage "
    "taught it (it taught a preference), or it moved the adapter outside labels.sham_distance of "
    "the real stage's distance (drift that grows with distance would be mis-counted)",
}


def control_validity(sham_own_change: float, real_own_change: float, change_norm_ratio: float, options) -> str | None:
    """Why the sham of one stage is not a valid null, or None when it is.

    Valid means (both documented in ``labels``): neutral — |``sham_own_change``| (stage k's objective's change
    under the sham) ≤ ``options.sham_own_tolerance`` × |``real_own_change``| (its change under the real
    stage), never below ``options.min_effect`` × that share; and distance-matched — ``change_norm_ratio``
    (‖Δθ‖ sham / real) inside ``options.sham_distance`` = [lo, hi]. A ratio that was not measured fails."""
    reasons = []
    tolerance = max(options.sham_own_tolerance * abs(real_own_change), options.sham_own_tolerance * options.min_effect)
    if not abs(sham_own_change) <= tolerance:
        reasons.append(
            f"the sham moved its own objective by {sham_own_change:+.3g} (tolerance ±{tolerance:.3g}: "
            f"{options.sham_own_tolerance:g} of the real stage's {real_own_change:+.3g}): it taught a preference"
        )
    lo, hi = options.sham_distance
    if not np.isfinite(change_norm_ratio):
        reasons.append("how far the sham moved the adapter was not measured")
    elif not lo <= change_norm_ratio <= hi:
        reasons.append(
            f"the sham moved the adapter {change_norm_ratio:.2f}x as far as the real stage (outside [{lo:g}, {hi:g}])"
        )
    return "; ".join(reasons) or None


def control_label(
    real_label: str,
    sham_label: str,
    specific_label: str,
    specific_within_threshold: bool,
    invalid_reason: str | None = None,
) -> str:
    """The control label from the labels (:func:`seqpref.stats.label_change`, plus ``redistribution``)
    of the real change, the sham's change and their difference (real − sham), and whether the
    difference's CI lies within ± the label threshold (equivalence); ``control_invalid`` whenever
    :func:`control_validity` gave a reason; see :data:`CONTROL_LABELS`."""
    if invalid_reason:
        return "control_invalid"
    if specific_label == "degradation":
        return "specific_degradation"
    if specific_label == "positive_transfer":
        return "specific_transfer"
    if real_label in ("degradation", "positive_transfer"):
        return "drift" if sham_label == real_label and specific_within_threshold else "inconclusive"
    return "stable"


def change_norms(training: pd.DataFrame, arm: str) -> pd.DataFrame:
    """How far each stage moved its adapter: the ``adapter/change_norm`` rows of a TRAINING frame as
    ``setting, method, order, seed, stage, arm, change_norm`` (``arm`` = "real" or "sham")."""
    rows = training[training["metric"] == CHANGE_NORM]
    keys = ["setting", "method", "order", "seed", "stage"]
    return rows[keys].assign(arm=arm, change_norm=rows["value"].to_numpy()).reset_index(drop=True)


def _metric_frame(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``frame`` with the label metric as a column (``rel_accuracy`` is derived per pair, as the summary does)."""
    from seqpref import metrics

    if metric == "rel_accuracy" and metric not in frame:
        return frame.assign(rel_accuracy=metrics.correct(frame["reward_margin"].to_numpy()))
    return frame


def _seed_pair_matrix(columns: list[pd.DataFrame], metric: str, seeds: list, where: str) -> np.ndarray:
    """``(n_seeds, n_pairs, len(columns))`` of ``metric``: each column a frame of the same pairs for every seed."""
    wide = [c.pivot(index="pair_id", columns="seed", values=metric).reindex(columns=seeds) for c in columns]
    index = wide[0].index
    matrix = np.stack([w.reindex(index).to_numpy().T for w in wide], axis=2)
    if np.isnan(matrix).any() or any(len(w) != len(index) for w in wide):
        raise ValueError(f"{where}: the sham and the real stages did not score the same pairs for every seed")
    return matrix


def control_rows(
    pairs: pd.DataFrame, sham: pd.DataFrame, summary: pd.DataFrame, options, movement: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One CONTROLS row per sequential run (seeds pooled), sham stage k and objective other than the
    one stage k trains: its change in the label metric from stage k−1 under the real stage k and under
    the sham, and the difference (``specific`` = real − sham), each with a paired bootstrap CI over
    pairs and seeds (the same resamples as the summary's CIs: same ``options.seed`` and seeds).

    ``pairs`` and ``sham`` are PAIR_SCORES frames (the real stages, the sham stages); ``summary`` is the
    SUMMARY table of ``pairs``, whose label and label threshold at stage k the row reuses (so the
    specific effect of an earlier objective is judged, like its change, relative to its own-stage gain).
    Every interval is :func:`seqpref.stats.crossed_interval`'s (seeds and pairs; pairs only with one seed),
    the share :func:`seqpref.stats.fieller_interval`'s; a sham that is no null (:func:`control_validity`)
    gives ``control_invalid`` and its reason instead of a control label.
    ``options`` is a :class:`seqpref.options.LabelOptions`. ``movement`` (:func:`change_norms` of
    both arms) adds how far the real stage and the sham moved the adapter, seed means: the sham's
    half-swapped labels partly cancel, so it moves less, and drift that grows with the distance moved
    is then under-counted by the sham (read ``change_norm_ratio`` beside ``specific``).

    The sham is neutral only where stage k's own pairs start near a zero margin: half-swapped labels
    pull those margins toward 0, so where the stage k−1 adapter already scores stage k's pairs (a
    conflicting or shared attribute) the sham moves them, and with them what shares their features,
    through the preference itself, and ``specific`` under-counts the interference. ``sham_own_change``
    (stage k's objective's change under the sham, with its CI) is that neutrality check: far from 0,
    read ``specific`` as a lower bound.
    """
    from seqpref import plan, stats, tables

    metric, rows = options.metric, []
    pairs, sham = _metric_frame(pairs, metric), _metric_frame(sham, metric)
    keys = ["setting", "method", "order"]
    for (setting, method, order), run_sham in sham.groupby(keys, sort=True, observed=True):
        real_run = pairs[(pairs.setting == setting) & (pairs.method == method) & (pairs.order == order)]
        seeds = sorted(run_sham["seed"].unique())
        if seeds != sorted(real_run["seed"].unique()):
            raise ValueError(
                f"{setting}/{method}/{order}: shams for seeds {seeds}, stages for seeds "
                f"{sorted(real_run['seed'].unique())}: every seed needs its sham"
            )
        for stage in sorted(run_sham["stage"].unique()):
            trained = plan.stage_objective(order, stage)
            own_real, own_sham = real_run[real_run.objective == trained], run_sham[run_sham.objective == trained]
            neutral = _seed_pair_matrix(
                [
                    own_real[own_real.stage == stage - 1],
                    own_sham[own_sham.stage == stage],
                    own_real[own_real.stage == stage],
                ],
                metric,
                seeds,
                f"{setting}/{method}/{order} {trained} sham {stage}",
            )
            sham_own = stats.crossed_interval(neutral[:, :, 1] - neutral[:, :, 0], options.confidence)
            real_own_change = float((neutral[:, :, 2] - neutral[:, :, 0]).mean())
            for objective in plan.stage_objectives(order):
                if objective == trained:
                    continue
                real = real_run[real_run.objective == objective]
                group = run_sham[(run_sham.objective == objective) & (run_sham.stage == stage)]
                own = plan.own_stage(objective, order, method)
                columns = [real[real.stage == stage - 1], real[real.stage == stage], group]
                if own < stage:
                    columns += [real[real.stage == own - 1], real[real.stage == own]]
                matrix = _seed_pair_matrix(
                    columns, metric, seeds, f"{setting}/{method}/{order} {objective} stage {stage}"
                )
                row = {
                    "setting": setting,
                    "method": method,
                    "order": order,
                    "n_seeds": len(seeds),
                    "objective": objective,
                    "stage": int(stage),
                    "trained_objective": trained,
                    "role": plan.role(objective, order, stage, method),
                    "n": matrix.shape[1],
                    "metric": metric,
                    "interval_covers": stats.covers(len(seeds)),
                }
                for name, ci in stats.contrast_intervals(
                    matrix, {"change_real": (0, 1), "change_sham": (0, 2), "specific": (2, 1)}, options.confidence
                ).items():
                    row.update({name: ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]})
                row.update(
                    sham_own_change=sham_own["mean"],
                    sham_own_change_lo=sham_own["lo"],
                    sham_own_change_hi=sham_own["hi"],
                    real_own_change=real_own_change,
                )
                row["own_gain"] = row["specific_share"] = row["specific_share_lo"] = row["specific_share_hi"] = np.nan
                if own < stage:
                    gain = matrix[:, :, 4] - matrix[:, :, 3]
                    row["own_gain"] = float(gain.mean())
                    share = stats.fieller_interval(matrix[:, :, 1] - matrix[:, :, 2], gain, options.confidence)
                    if np.isfinite(share["lo"]):  # bounded: the gain is shown above 0 (a share of ~0 means nothing)
                        row.update(
                            specific_share=share["ratio"], specific_share_lo=share["lo"], specific_share_hi=share["hi"]
                        )
                for arm in ("real", "sham"):
                    row[f"change_norm_{arm}"] = np.nan
                    if movement is not None:
                        moved = movement[
                            (movement.setting == setting)
                            & (movement.method == method)
                            & (movement.order == order)
                            & (movement.stage == stage)
                            & (movement.arm == arm)
                            & movement.seed.isin(seeds)
                        ]
                        row[f"change_norm_{arm}"] = float(moved["change_norm"].mean()) if len(moved) else np.nan
                row["change_norm_ratio"] = row["change_norm_sham"] / row["change_norm_real"]
                cell = summary[
                    (summary.setting == setting)
                    & (summary.method == method)
                    & (summary.order == order)
                    & (summary.objective == objective)
                    & (summary.stage == stage)
                ].iloc[0]
                threshold = float(cell["label_threshold"])
                row["label_threshold"], row["label_criterion"], row["label_real"] = (
                    threshold,
                    cell["label_criterion"],
                    cell["label"],
                )
                row["label_sham"] = stats.label_change(
                    row["change_sham"], row["change_sham_lo"], row["change_sham_hi"], threshold
                )
                specific = stats.label_change(row["specific"], row["specific_lo"], row["specific_hi"], threshold)
                within = -threshold < row["specific_lo"] and row["specific_hi"] < threshold
                row["control_invalid_reason"] = control_validity(
                    row["sham_own_change"], real_own_change, row["change_norm_ratio"], options
                )
                row["control_label"] = control_label(
                    row["label_real"], row["label_sham"], specific, within, row["control_invalid_reason"]
                )
                rows.append(row)
    return pd.DataFrame(rows, columns=tables.CONTROLS.names)


def main(argv=None) -> None:
    """CLI: ``sham PAIRS BASE_LOGPS OUT_PAIRS OUT_LOGPS --seed S``."""
    from seqpref import provenance, tables

    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sham = commands.add_parser("sham")
    for name in ("pairs", "base_logps", "out_pairs", "out_logps"):
        sham.add_argument(name)
    sham.add_argument("--seed", type=int, required=True, help="the run seed: each seed's sham swaps its own half")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pairs, logps, swapped = sham_pairs(pd.read_parquet(args.pairs), pd.read_parquet(args.base_logps), args.seed)
    record = provenance.provenance(
        "prepare_sham", {"seed": args.seed, "salt": SHAM_SALT, "swapped": int(swapped.sum())}
    )
    tables.write_table(pairs, args.out_pairs, tables.PAIRS, record)
    tables.write_table(logps, args.out_logps, tables.LOGPS, record)
    log.info("sham: %d of %d pairs swapped (seed %d)", int(swapped.sum()), len(swapped), args.seed)


if __name__ == "__main__":
    main()
