"""Paired bootstrap confidence intervals over evaluation pairs.

One resample draws pair indices with replacement and is applied to *every* stage of the same
objective at once, so a change between stages is bootstrapped on the same pairs (paired). The
resampling is vectorised: a ``(n_boot, n_pairs)`` index matrix gathers a ``(n_pairs, n_stages)``
value matrix in one numpy call instead of a Python loop over resamples.
"""

from __future__ import annotations

import numpy as np


def bootstrap_indices(n_pairs: int, n_boot: int, seed: int) -> np.ndarray:
    """Resampled pair indices, shape ``(n_boot, n_pairs)``, drawn with replacement from ``seed``."""
    if n_pairs < 1:
        raise ValueError("cannot bootstrap zero pairs")
    return np.random.default_rng(seed).integers(0, n_pairs, size=(n_boot, n_pairs))


def _resampled_means(values: np.ndarray, indices: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Means of ``values[(n_pairs, n_cols)]`` over each resample: shape ``(n_boot, n_cols)``."""
    out = np.empty((indices.shape[0], values.shape[1]))
    for start in range(0, indices.shape[0], chunk):  # bound memory at chunk × n_pairs × n_cols
        out[start : start + chunk] = values[indices[start : start + chunk]].mean(axis=1)
    return out


def paired_stage_ci(
    values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, np.ndarray]:
    """Means and paired-bootstrap CIs of every stage and of every stage-to-stage change.

    Args:
        values: ``(n_pairs, n_stages)`` metric of the same pairs after each stage (no NaN).
        n_boot: resamples; confidence: two-sided level of the percentile interval.
    Returns:
        ``mean``, ``lo``, ``hi`` of shape ``(n_stages,)`` and ``change``, ``change_lo``,
        ``change_hi`` of shape ``(n_stages,)`` (change at stage 0 is NaN; change at stage k is
        stage k minus stage k−1, its CI from the same resamples).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be (n_pairs, n_stages), got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values contain NaN: every pair must be scored at every stage")
    alpha = (1.0 - confidence) / 2.0
    means = values.mean(axis=0)
    boot = _resampled_means(values, bootstrap_indices(values.shape[0], n_boot, seed))
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    nan = np.full(1, np.nan)
    boot_change = np.diff(boot, axis=1)
    if boot_change.shape[1]:
        change_lo, change_hi = np.quantile(boot_change, [alpha, 1.0 - alpha], axis=0)
    else:
        change_lo = change_hi = np.empty(0)
    return {
        "mean": means,
        "lo": lo,
        "hi": hi,
        "change": np.concatenate([nan, np.diff(means)]),
        "change_lo": np.concatenate([nan, change_lo]),
        "change_hi": np.concatenate([nan, change_hi]),
    }


def label_change(change: float, lo: float, hi: float, min_effect: float) -> str:
    """``degradation`` / ``positive_transfer`` when the CI excludes 0 and |change| ≥ ``min_effect``, else ``stable``."""
    if hi < 0 and change <= -min_effect:
        return "degradation"
    if lo > 0 and change >= min_effect:
        return "positive_transfer"
    return "stable"
