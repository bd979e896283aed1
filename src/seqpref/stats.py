"""Paired bootstrap confidence intervals over evaluation pairs and seeds.

One resample draws pair indices with replacement and is applied to *every* stage of the same
objective at once, so a change between stages is bootstrapped on the same pairs (paired). With
several seeds (the same eval pairs scored by runs that differ only in their seed) the bootstrap has
two levels: each resample draws the seeds with replacement and, within them, the pairs; the pooled
replicate is the mean over the drawn seeds of their pair-resampled means. The resampling is
vectorised: per-pair counts times the value matrix (BLAS), never a Python loop over resamples.
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

    def __init__(self, indices: np.ndarray, chunk: int = 128, seed_counts: np.ndarray | None = None):
        n_boot, self.n_pairs = indices.shape
        # (n_boot, n_seeds): how often each seed was drawn in each resample (one seed: always once)
        self.seed_counts = np.ones((n_boot, 1)) if seed_counts is None else np.asarray(seed_counts, dtype=float)
        if self.seed_counts.shape[0] != n_boot:
            raise ValueError("seed counts and pair resamples differ in n_boot")
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
    def draw(cls, n_pairs: int, n_boot: int, seed: int, n_seeds: int = 1) -> "Resampler":
        """Pair resamples drawn with :func:`bootstrap_indices` and, for ``n_seeds`` > 1, seed resamples."""
        seed_counts = None
        if n_seeds > 1:
            draws = np.random.default_rng([seed, n_seeds]).integers(0, n_seeds, size=(n_boot, n_seeds))
            seed_counts = np.stack([np.bincount(row, minlength=n_seeds) for row in draws])
        return cls(bootstrap_indices(n_pairs, n_boot, seed), seed_counts=seed_counts)

    @property
    def n_seeds(self) -> int:
        return self.seed_counts.shape[1]

    def _pair_means(self, values: np.ndarray) -> np.ndarray:
        out = np.empty((self.counts.shape[0], values.shape[1]))
        for start in range(0, self.counts.shape[0], self.chunk):
            out[start : start + self.chunk] = self.counts[start : start + self.chunk].astype(float) @ values
        return out / self.n_pairs

    def means(self, values: np.ndarray) -> np.ndarray:
        """Means over each resample of ``values``: ``(n_pairs, n_cols)`` for one seed, or
        ``(n_seeds, n_pairs, n_cols)`` (the same pairs per seed): returns ``(n_boot, n_cols)``.

        With seeds, replicate b is Σ_s c_bs · mean_b(values[s]) / n_seeds, c_bs how often seed s was
        drawn: seeds resampled, and within a seed the pairs (the same pair draws for every seed, as
        the seeds score the same pairs)."""
        values = np.asarray(values, dtype=float)
        if values.ndim == 2:
            values = values[None]
        if values.shape[0] != self.n_seeds or values.shape[1] != self.n_pairs:
            raise ValueError(
                f"values have {values.shape[0]} seeds × {values.shape[1]} pairs, the resamples {self.n_seeds} × {self.n_pairs}"
            )
        out = np.zeros((self.counts.shape[0], values.shape[2]))
        for s in range(self.n_seeds):
            out += self.seed_counts[:, s : s + 1] * self._pair_means(values[s])
        return out / self.n_seeds


def _resampled_means(values: np.ndarray, indices) -> np.ndarray:
    """Means of ``values`` ``(n_pairs, n_cols)`` or ``(n_seeds, n_pairs, n_cols)`` over each resample:
    shape ``(n_boot, n_cols)``. ``indices`` is a ``(n_boot, n_pairs)`` index matrix or a :class:`Resampler`.
    """
    resampler = indices if isinstance(indices, Resampler) else Resampler(indices)
    return resampler.means(values)


def stage_means(values: np.ndarray) -> np.ndarray:
    """Means over pairs (and seeds) of ``(n_pairs, n_cols)`` or ``(n_seeds, n_pairs, n_cols)``: ``(n_cols,)``."""
    values = np.asarray(values, dtype=float)
    return values.reshape(-1, values.shape[-1]).mean(axis=0)


def percentile_ci(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval of bootstrap replicates ``boot`` ``(n_boot, ...)``: ``(lo, hi)``."""
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def ratio_ci(numerator: np.ndarray, denominator: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile CI of ``numerator / denominator`` over paired bootstrap replicates ``(n_boot,)``;
    replicates whose ratio is not finite (a denominator of exactly 0) are dropped, and NaN is returned
    when more than 1% of them are (the ratio is then not estimable)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = numerator / denominator
    finite = np.isfinite(ratios)
    if finite.mean() < 0.99:
        return float("nan"), float("nan")
    lo, hi = percentile_ci(ratios[finite], confidence)
    return float(lo), float(hi)


def paired_stage_ci(
    values: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0, indices=None
) -> dict[str, np.ndarray]:
    """Means and paired-bootstrap CIs of every stage and of every stage-to-stage change.

    Args:
        values: ``(n_pairs, n_stages)`` metric of the same pairs after each stage (no NaN), or
            ``(n_seeds, n_pairs, n_stages)`` for several seeds (then ``indices`` must be a
            :class:`Resampler` with as many seeds; means are over seeds and pairs).
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
    if values.ndim not in (2, 3):
        raise ValueError(f"values must be (n_pairs, n_stages) or (n_seeds, n_pairs, n_stages), got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values contain NaN: every pair must be scored at every stage")
    means = stage_means(values)
    if indices is None:
        n_seeds = 1 if values.ndim == 2 else values.shape[0]
        indices = Resampler.draw(values.shape[-2], n_boot, seed, n_seeds)
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

