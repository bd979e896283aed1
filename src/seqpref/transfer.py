"""Pair-level transfer of one objective within one run: backward/forward transfer and the quartile
decomposition (DESIGN.md, "Metrics").

Every function takes the objective's ``(n_pairs, n_stages)`` metric matrix (stage 0 = base, the
same pairs in every column) and the stage that trained it, and returns plain rows for a table.
"""

from __future__ import annotations

import numpy as np

from seqpref import stats


def backward_forward(
    values: np.ndarray, own_stage: int, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    boot: np.ndarray | None = None,
) -> dict:
    """Backward and forward transfer of one objective, with paired-bootstrap CIs.

    ``bwt`` = metric(last stage) − metric(own stage): what later stages did to it (0 when it is
    trained last); ``fwt`` = metric(own stage − 1) − metric(stage 0): what earlier stages did to it
    before it was trained (0 when it is trained first). Units are the metric's. ``boot`` — the
    ``(n_boot, n_stages)`` resampled stage means of ``values`` — may be passed to reuse the resamples
    of the stage CIs (then the contrasts are paired with them); otherwise it is drawn from ``seed``.
    """
    last = values.shape[1] - 1
    if not 1 <= own_stage <= last:
        raise ValueError(f"own stage {own_stage} outside 1..{last}")
    if boot is None:
        boot = stats._resampled_means(values, stats.bootstrap_indices(len(values), n_boot, seed))
    means = values.mean(axis=0)
    row = {"own_stage": own_stage, "last_stage": last}
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
    indices: np.ndarray | None = None,
) -> list[dict]:
    """Per quartile of the own-stage margin and per later stage k: the mean change since the own
    stage (with CI), the share of pairs whose margin fell, and the share whose sign flipped.

    A flip is a pair whose margin changed sign between the own stage and stage k (a margin of
    exactly 0 counts as its own sign, so moving from 0 to anything is a flip). The CI resamples
    all pairs (``indices``, shared with the other tables when given) and takes each quartile's
    mean among the resampled pairs, so every quartile and stage comes from one matrix product.
    """
    own = values[:, own_stage]
    quartile = quartile_of(own)
    later = list(range(own_stage + 1, values.shape[1]))
    if not later:
        return []
    masks = np.stack([quartile == q for q in range(1, 5)], axis=1).astype(float)  # (n, 4)
    changes = values[:, later] - own[:, None]  # (n, L)
    numerators = (changes[:, :, None] * masks[:, None, :]).reshape(len(own), -1)  # (n, L*4)
    if indices is None:
        indices = stats.bootstrap_indices(len(own), n_boot, seed)
    boot = stats._resampled_means(np.hstack([numerators, masks]), indices)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample may miss a small quartile
        boot_means = boot[:, : numerators.shape[1]] / np.tile(boot[:, numerators.shape[1] :], len(later))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.nanquantile(boot_means, [alpha, 1.0 - alpha], axis=0)
    rows = []
    for i, stage in enumerate(later):
        flipped = np.sign(values[:, stage]) != np.sign(own)
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
