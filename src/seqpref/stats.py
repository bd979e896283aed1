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
    return np.random.default_rng(seed).integers(0, n_pairs, size=(n_boot, n_pairs), dtype=np.int32)


class Resampler:
    """One set of bootstrap resamples of ``n_pairs`` pairs, stored as per-pair counts.

    Each resample becomes a row of counts (how often each pair was drawn), so the means of any
    ``(n_pairs, n_cols)`` matrix over all resamples are one matrix product ``counts @ values / n``
    (BLAS) instead of gathering ``n_boot × n_pairs × n_cols`` values; and the counts are built once
    and reused for every metric and table of an objective. Counts are stored as uint16 (a pair drawn
    more than 65535 times in one resample does not happen at these sizes; it is checked).
    """

    def __init__(self, indices: np.ndarray, chunk: int = 128):
        n_boot, self.n_pairs = indices.shape
        self.chunk = chunk
        self.counts = np.empty((n_boot, self.n_pairs), dtype=np.uint16)
        for start in range(0, n_boot, chunk):
            block = indices[start : start + chunk]
            offsets = np.arange(block.shape[0])[:, None] * self.n_pairs
            counts = np.bincount((block + offsets).ravel(), minlength=block.shape[0] * self.n_pairs)
            if counts.max(initial=0) > np.iinfo(np.uint16).max:
                raise OverflowError("a pair was drawn more than 65535 times in one resample")
            self.counts[start : start + chunk] = counts.reshape(block.shape[0], self.n_pairs)

    @classmethod
    def draw(cls, n_pairs: int, n_boot: int, seed: int) -> "Resampler":
        """Resamples drawn with :func:`bootstrap_indices`."""
        return cls(bootstrap_indices(n_pairs, n_boot, seed))

    def means(self, values: np.ndarray) -> np.ndarray:
        """Means of ``values`` ``(n_pairs, n_cols)`` over each resample: ``(n_boot, n_cols)``."""
        values = np.asarray(values, dtype=float)
        if values.shape[0] != self.n_pairs:
            raise ValueError(f"values have {values.shape[0]} pairs, the resamples {self.n_pairs}")
        out = np.empty((self.counts.shape[0], values.shape[1]))
        for start in range(0, self.counts.shape[0], self.chunk):
            out[start : start + self.chunk] = self.counts[start : start + self.chunk].astype(float) @ values
        return out / self.n_pairs


def _resampled_means(values: np.ndarray, indices) -> np.ndarray:
    """Means of ``values[(n_pairs, n_cols)]`` over each resample: shape ``(n_boot, n_cols)``.

    ``indices`` is a ``(n_boot, n_pairs)`` index matrix or a :class:`Resampler` built from one.
    """
    resampler = indices if isinstance(indices, Resampler) else Resampler(indices)
    return resampler.means(values)


def percentile_ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval of bootstrap replicates ``boot`` ``(n_boot, ...)``: ``(lo, hi)``."""
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def paired_stage_ci(
    values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0, indices=None
) -> dict[str, np.ndarray]:
    """Means and paired-bootstrap CIs of every stage and of every stage-to-stage change.

    Args:
        values: ``(n_pairs, n_stages)`` metric of the same pairs after each stage (no NaN).
        n_boot: resamples; confidence: two-sided level of the percentile interval.
    Returns:
        ``mean``, ``lo``, ``hi`` of shape ``(n_stages,)`` and ``change``, ``change_lo``,
        ``change_hi`` of shape ``(n_stages,)`` (change at stage 0 is NaN; change at stage k is
        stage k minus stage k−1, its CI from the same resamples), and ``boot``, the
        ``(n_boot, n_stages)`` resampled means, for further contrasts.
        ``indices`` (from :func:`bootstrap_indices`, or a :class:`Resampler`) may be passed to
        share resamples between calls.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be (n_pairs, n_stages), got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values contain NaN: every pair must be scored at every stage")
    means = values.mean(axis=0)
    if indices is None:
        indices = bootstrap_indices(values.shape[0], n_boot, seed)
    boot = _resampled_means(values, indices)
    lo, hi = percentile_ci(boot, confidence)
    nan = np.full(1, np.nan)
    boot_change = np.diff(boot, axis=1)
    if boot_change.shape[1]:
        change_lo, change_hi = percentile_ci(boot_change, confidence)
    else:
        change_lo = change_hi = np.empty(0)
    return {
        "mean": means,
        "lo": lo,
        "hi": hi,
        "change": np.concatenate([nan, np.diff(means)]),
        "change_lo": np.concatenate([nan, change_lo]),
        "change_hi": np.concatenate([nan, change_hi]),
        "boot": boot,
    }


def label_change(change: float, lo: float, hi: float, min_effect: float) -> str:
    """``degradation`` / ``positive_transfer`` when the CI excludes 0 and |change| ≥ ``min_effect``, else ``stable``."""
    if hi < 0 and change <= -min_effect:
        return "degradation"
    if lo > 0 and change >= min_effect:
        return "positive_transfer"
    return "stable"

