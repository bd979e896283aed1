"""Pair-level transfer of one objective within one run: backward/forward transfer and the quartile
decomposition (DESIGN.md, "Metrics").

Every function takes the objective's ``(n_pairs, n_stages)`` metric matrix (stage 0 = base, the
same pairs in every column), or ``(n_seeds, n_pairs, n_stages)`` for several seeds of the same run,
and the stage that trained it, and returns plain rows for a table (seeds pooled).
"""

from __future__ import annotations

import numpy as np

from seqpref import stats


def backward_forward(
    values: np.ndarray, own_stage: int, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    boot: np.ndarray | None = None,
) -> dict:
    """Backward and forward transfer of one objective, with paired-bootstrap CIs.

    ``final`` = metric(last stage), the run's end point;
    ``bwt`` = metric(last stage) − metric(own stage): what later stages did to it (0 when it is
    trained last); ``fwt`` = metric(own stage − 1) − metric(stage 0): what earlier stages did to it
    before it was trained (0 when it is trained first). Units are the metric's. ``boot`` — the
    ``(n_boot, n_stages)`` resampled stage means of ``values`` — may be passed to reuse the resamples
    of the stage CIs (then the contrasts are paired with them); otherwise it is drawn from ``seed``.
    """
    last = values.shape[-1] - 1
    if not 1 <= own_stage <= last:
        raise ValueError(f"own stage {own_stage} outside 1..{last}")
    if boot is None:
        n_seeds = 1 if values.ndim == 2 else values.shape[0]
        boot = stats._resampled_means(values, stats.Resampler.draw(values.shape[-2], n_boot, seed, n_seeds))
    means = stats.stage_means(values)
    row = {"own_stage": own_stage, "last_stage": last}
    lo, hi = stats.percentile_ci(boot[:, last], confidence)
    row.update({"final": float(means[last]), "final_lo": float(lo), "final_hi": float(hi)})
    for name, (a, b) in {"bwt": (own_stage, last), "fwt": (0, own_stage - 1)}.items():
        lo, hi = stats.percentile_ci(boot[:, b] - boot[:, a], confidence)
        row.update({name: float(means[b] - means[a]), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    return row


def quartile_of(own_margins: np.ndarray) -> np.ndarray:
    """Quartile (1 = lowest margin … 4 = highest) of each pair by its margin after its own stage.

    Ties are split by position so the quartiles have equal sizes (±1): shape ``(n_pairs,)``, int.
    """
    n = len(own_margins)
    if n < 4:
        raise ValueError(f"need at least 4 pairs for quartiles, got {n}")
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(own_margins, kind="stable")] = np.arange(n)
    return ranks * 4 // n + 1


def quartile_rows(
    values: np.ndarray, own_stage: int, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    indices=None,
) -> list[dict]:
    """Per quartile of the own-stage margin and per later stage k: the mean change since the own
    stage (with CI), the share of pairs whose margin fell, and the share whose sign flipped. With
    seeds, quartiles are assigned within each seed and the rows pool every seed's pairs.

    A flip is a pair whose margin changed sign between the own stage and stage k (a margin of
    exactly 0 counts as its own sign, so moving from 0 to anything is a flip). The CI resamples
    all pairs (``indices``, shared with the other tables when given) and takes each quartile's
    mean among the resampled pairs, so every quartile and stage comes from one matrix product.
    """
    values = np.asarray(values, dtype=float)
    stacked = values if values.ndim == 3 else values[None]  # (S, n, K)
    n_seeds, n_pairs, n_stages = stacked.shape
    later = list(range(own_stage + 1, n_stages))
    if not later:
        return []
    own_by_seed = stacked[:, :, own_stage]  # (S, n)
    quartile_by_seed = np.stack([quartile_of(own) for own in own_by_seed])  # (S, n)
    masks = np.stack([quartile_by_seed == q for q in range(1, 5)], axis=2).astype(float)  # (S, n, 4)
    changes_by_seed = stacked[:, :, later] - own_by_seed[:, :, None]  # (S, n, L)
    numerators = (changes_by_seed[:, :, :, None] * masks[:, :, None, :]).reshape(n_seeds, n_pairs, -1)  # (S, n, L*4)
    if indices is None:
        indices = stats.Resampler.draw(n_pairs, n_boot, seed, n_seeds)
    boot = stats._resampled_means(np.concatenate([numerators, masks], axis=2), indices)
    # point estimates pool the pairs of every seed
    own, quartile = own_by_seed.ravel(), quartile_by_seed.ravel()
    changes = changes_by_seed.reshape(n_seeds * n_pairs, len(later))
    pooled = stacked.reshape(n_seeds * n_pairs, n_stages)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample may miss a small quartile
        width = numerators.shape[2]
        boot_means = boot[:, :width] / np.tile(boot[:, width:], len(later))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.nanquantile(boot_means, [alpha, 1.0 - alpha], axis=0)
    rows = []
    for i, stage in enumerate(later):
        flipped = np.sign(pooled[:, stage]) != np.sign(own)
        for q in range(1, 5):
            mask, column = quartile == q, i * 4 + q - 1
            rows.append({
                "own_stage": own_stage,
                "stage": stage,
                "quartile": q,
                "n": int(mask.sum()),
                "own_margin_min": float(own[mask].min()),
                "own_margin_max": float(own[mask].max()),
                "mean_change": float(changes[mask, i].mean()),
                "mean_change_lo": float(lo[column]),
                "mean_change_hi": float(hi[column]),
                "share_fell": float((changes[mask, i] < 0).mean()),
                "share_flipped": float(flipped[mask].mean()),
            })
    return rows
