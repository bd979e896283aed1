"""The sham stage: the control that tells preference interference from drift.

A change in an earlier objective after stage k may come from stage k's *preferences* or from any
further training on stage k's prompts and responses (likelihood drift that moves margins whatever
the labels say). The sham stage k trains exactly as stage k does — same prompts, responses, steps,
LoRA, learning rate, continuing the same stage k−1 adapter — on stage k's train pairs with chosen
and rejected swapped for a seeded random half (``n // 2`` pairs), so that its preference signal
cancels on average while everything else stays. The earlier objective's change under the real
stage minus its change under the sham is the *specific* effect of stage k's preferences.

``python -m seqpref.controls sham PAIRS BASE_LOGPS OUT_PAIRS OUT_LOGPS --seed S`` (the ``prepare_sham``
rule) writes the sham's train pairs and their base log-probs (swapped with them).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

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


def sham_pairs(pairs: pd.DataFrame, base_logps: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
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


#: what a control label says (``control_label`` in tables/controls.parquet)
CONTROL_LABELS = {
    "specific_degradation": "the real stage lowered the objective more than the sham did (the difference's CI "
                            "is below 0 and passes the label threshold): caused by stage k's preferences",
    "specific_transfer": "the real stage raised it more than the sham did: a preference-specific gain",
    "drift": "no specific effect, and the sham alone moves the objective the same way the real stage does "
             "(both labelled alike): further training on those prompts and responses moves it whatever the labels",
    "inconclusive": "the real stage's change is labelled, but neither the difference from the sham nor the sham's "
                    "own change is: the control cannot tell",
    "stable": "the real stage's change is not labelled and the difference from the sham is not either",
}


def control_label(real_label: str, sham_label: str, specific_label: str) -> str:
    """The control label from the labels (:func:`seqpref.stats.label_change`, plus ``redistribution``)
    of the real change, the sham's change and their difference (real − sham); see :data:`CONTROL_LABELS`."""
    if specific_label == "degradation":
        return "specific_degradation"
    if specific_label == "positive_transfer":
        return "specific_transfer"
    if real_label in ("degradation", "positive_transfer"):
        return "drift" if sham_label == real_label else "inconclusive"
    return "stable"


def change_norms(training: pd.DataFrame, arm: str) -> pd.DataFrame:
    """How far each stage moved its adapter: the ``adapter/change_norm`` rows of a TRAINING frame as
    ``setting, method, order, seed, stage, arm, change_norm`` (``arm`` = "real" or "sham")."""
    from seqpref.train import CHANGE_NORM

    rows = training[training["metric"] == CHANGE_NORM]
    keys = ["setting", "method", "order", "seed", "stage"]
    return rows[keys].assign(arm=arm, change_norm=rows["value"].to_numpy()).reset_index(drop=True)


def control_rows(pairs: pd.DataFrame, sham: pd.DataFrame, summary: pd.DataFrame, options,
                 movement: pd.DataFrame | None = None) -> pd.DataFrame:
    """One CONTROLS row per sequential run (seeds pooled), sham stage k and objective other than the
    one stage k trains: its change in the label metric from stage k−1 under the real stage k and under
    the sham, and the difference (``specific`` = real − sham), each with a paired bootstrap CI over
    pairs and seeds (every column from the same resamples as the summary's CIs: same ``options.seed``).

    ``pairs`` and ``sham`` are PAIR_SCORES frames (the real stages, the sham stages); ``summary`` is the
    SUMMARY table of ``pairs``, whose label and label threshold at stage k the row reuses (so the
    specific effect of an earlier objective is judged, like its change, relative to its own-stage gain).
    ``options`` is a :class:`seqpref.aggregate.LabelOptions`. ``movement`` (:func:`change_norms` of
    both arms) adds how far the real stage and the sham moved the adapter, seed means: the sham's
    half-swapped labels partly cancel, so it moves less, and drift that grows with the distance moved
    is then under-counted by the sham (read ``change_norm_ratio`` beside ``specific``).
    """
    from seqpref import plan, stats, tables

    metric, rows = options.metric, []
    keys = ["setting", "method", "order", "objective"]
    for key, group in sham.groupby(keys, sort=True, observed=True):
        setting, method, order, objective = key
        real = pairs[(pairs.setting == setting) & (pairs.method == method) & (pairs.order == order)
                     & (pairs.objective == objective)]
        seeds = sorted(group["seed"].unique())
        own = plan.own_stage(objective, order, method)
        for stage in sorted(group["stage"].unique()):
            if plan.stage_objective(order, stage) == objective:
                continue
            columns = [real[real.stage == stage - 1], real[real.stage == stage], group[group.stage == stage]]
            if own < stage:
                columns += [real[real.stage == own - 1], real[real.stage == own]]
            wide = [c.pivot(index="pair_id", columns="seed", values=metric).reindex(columns=seeds) for c in columns]
            index = wide[0].index
            matrix = np.stack([w.reindex(index).to_numpy().T for w in wide], axis=2)  # (seeds, pairs, columns)
            if np.isnan(matrix).any():
                raise ValueError(f"{setting}/{method}/{order} {objective} stage {stage}: the sham and the real "
                                 "stages did not score the same pairs for every seed")
            resampler = stats.Resampler.draw(matrix.shape[1], options.n_boot, options.seed, len(seeds))
            boot, means = stats._resampled_means(matrix, resampler), stats.stage_means(matrix)
            contrasts = {"change_real": (1, 0), "change_sham": (2, 0), "specific": (1, 2)}
            row = {"setting": setting, "method": method, "order": order, "n_seeds": len(seeds), "objective": objective,
                   "stage": int(stage), "trained_objective": plan.stage_objective(order, stage),
                   "role": plan.role(objective, order, stage, method), "n": matrix.shape[1], "metric": metric}
            for name, (a, b) in contrasts.items():
                lo, hi = stats.percentile_ci(boot[:, a] - boot[:, b], options.confidence)
                row.update({name: float(means[a] - means[b]), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
            row["own_gain"] = row["specific_share"] = row["specific_share_lo"] = row["specific_share_hi"] = np.nan
            if own < stage:
                gain = boot[:, 4] - boot[:, 3]
                row["own_gain"] = float(means[4] - means[3])
                with np.errstate(divide="ignore", invalid="ignore"):
                    lo, hi = np.nanquantile((boot[:, 1] - boot[:, 2]) / gain, [(1 - options.confidence) / 2, (1 + options.confidence) / 2])
                row.update(specific_share=row["specific"] / row["own_gain"] if row["own_gain"] else np.nan,
                           specific_share_lo=float(lo), specific_share_hi=float(hi))
            for arm in ("real", "sham"):
                row[f"change_norm_{arm}"] = np.nan
                if movement is not None:
                    moved = movement[(movement.setting == setting) & (movement.method == method) & (movement.order == order)
                                     & (movement.stage == stage) & (movement.arm == arm) & movement.seed.isin(seeds)]
                    row[f"change_norm_{arm}"] = float(moved["change_norm"].mean()) if len(moved) else np.nan
            row["change_norm_ratio"] = row["change_norm_sham"] / row["change_norm_real"]
            cell = summary[(summary.setting == setting) & (summary.method == method) & (summary.order == order)
                           & (summary.objective == objective) & (summary.stage == stage)].iloc[0]
            threshold = float(cell["label_threshold"])
            row["label_threshold"], row["label_criterion"], row["label_real"] = threshold, cell["label_criterion"], cell["label"]
            row["label_sham"] = stats.label_change(row["change_sham"], row["change_sham_lo"], row["change_sham_hi"], threshold)
            specific = stats.label_change(row["specific"], row["specific_lo"], row["specific_hi"], threshold)
            row["control_label"] = control_label(row["label_real"], row["label_sham"], specific)
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
    record = provenance.provenance("prepare_sham", {"seed": args.seed, "salt": SHAM_SALT, "swapped": int(swapped.sum())})
    tables.write_table(pairs, args.out_pairs, tables.PAIRS, record)
    tables.write_table(logps, args.out_logps, tables.LOGPS, record)
    log.info("sham: %d of %d pairs swapped (seed %d)", int(swapped.sum()), len(swapped), args.seed)


if __name__ == "__main__":
    main()
