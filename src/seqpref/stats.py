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
        raise ValueError(
            f"values must be (n_pairs, n_stages) or (n_seeds, n_pairs, n_stages), got shape {values.shape}"
        )
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


# -- intervals that hold with few seeds ----------------------------------------------------------------
#
# A mean over P held-out pairs scored by S training runs (seeds) has two sources of error: which pairs
# were held out and which runs happened. The pooled bootstrap above resamples S = 2 or 3 seeds, which
# gives a handful of distinct seed sets, so its seed component is far too narrow and its "95%" covers
# 70-90% (the few-clusters problem: Cameron, Gelbach & Miller 2008, REStat 90(3)). Model the (seed,
# pair) table as x[s, p] = mu + a_s + b_p + e_sp (run effect a, pair effect b, noise e). Each seed's
# mean m_s = mu + b_bar + (a_s + e_bar_s): the seeds share the pairs' b_bar, and differ by a_s + e_bar_s.
# So the interval has two parts:
#   * the seed part: Student's t with S − 1 df on the seed means, exact for mu + b_bar under normality
#     whatever the ratio of seed to pair error (Donald & Lang 2007, REStat 89(2); Bester, Conley & Hansen
#     2011, J. Econometrics 165(2)): half-width t_{S-1} sqrt(var(m_s) / S), 12.7 x the SE at S = 2;
#   * the shared pairs' part: b_bar's variance s2_b / P, with s2_b = (ms_pair − ms_res) / S from the
#     two-way ANOVA (Searle, Casella & McCulloch 1992, "Variance Components", ch. 4), t with P − 1 df;
# combined as the root of the summed squared half-widths, which for two independent errors is at least
# the exact half-width (conservative). A Satterthwaite df for the pooled variance was tried and dropped:
# with 2 seeds its df is estimated from one seed contrast and rises exactly when the seeds agree by
# chance, and it covered 89-90% (benchmarks/calibration.py). With one seed there is no seed-level
# information at all: the interval covers pair sampling only (t with P − 1 df) and says so.

#: what an interval covers (the ``*_covers`` columns of the tables)
COVERS_PAIRS = "pairs (1 seed)"


def covers(n_seeds: int) -> str:
    """What an interval from ``n_seeds`` seeds covers, in words for the tables."""
    if n_seeds < 2:
        return COVERS_PAIRS
    return f"pairs and seeds ({n_seeds} seeds)"


def _as_table(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"need an (n_seeds, n_pairs) table with ≥ 2 pairs, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("values contain NaN: every pair must be scored for every seed")
    return x


def _mean_squares(x: np.ndarray, y: np.ndarray | None = None) -> tuple[float, float, float]:
    """ANOVA mean (cross-)products of seed, pair and residual for ``(S, P)`` tables ``x`` (and ``y``):
    ``(ms_seed, ms_pair, ms_res)``; with ``y``, the bilinear forms (for Fieller's interval)."""
    y = x if y is None else y
    n_seeds, n_pairs = x.shape

    def parts(z):
        grand = z.mean()
        seed, pair = z.mean(axis=1) - grand, z.mean(axis=0) - grand
        return seed, pair, z - grand - seed[:, None] - pair[None, :]

    xs, xp, xr = parts(x)
    ys, yp, yr = parts(y)
    ms_seed = n_pairs * float(xs @ ys) / (n_seeds - 1) if n_seeds > 1 else 0.0
    ms_pair = n_seeds * float(xp @ yp) / (n_pairs - 1)
    ms_res = float((xr * yr).sum()) / ((n_seeds - 1) * (n_pairs - 1)) if n_seeds > 1 else 0.0
    return ms_seed, ms_pair, ms_res


def t_quantile(confidence: float, df: float) -> float:
    """Two-sided critical value of Student's t with ``df`` degrees of freedom (scipy)."""
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df))


def _weighted_forms(x: np.ndarray, y: np.ndarray, confidence: float, truncate: bool) -> float:
    """The squared half-width of :func:`crossed_interval` as a bilinear form in (x, y); ``truncate``
    floors the pair-effect variance at 0 (for a single table; Fieller's quadratic needs it unfloored)."""
    n_seeds, n_pairs = x.shape
    ms_seed, ms_pair, ms_res = _mean_squares(x, y)
    t_pair = t_quantile(confidence, n_pairs - 1)
    if n_seeds < 2:  # pairs only: the sample variance of the pairs over P
        return t_pair**2 * ms_pair / n_pairs
    pair_effect = (ms_pair - ms_res) / n_seeds
    if truncate:
        pair_effect = max(pair_effect, 0.0)
    # var of the seed means = ms_seed / P; its squared standard error over S seeds = ms_seed / (S P)
    return t_quantile(confidence, n_seeds - 1) ** 2 * ms_seed / (n_seeds * n_pairs) + t_pair**2 * pair_effect / n_pairs


def crossed_interval(values: np.ndarray, confidence: float = 0.95) -> dict:
    """Mean and CI of a ``(n_seeds, n_pairs)`` table (or ``(n_pairs,)`` for one seed) whose rows score the
    same pairs, covering pair sampling and, with ≥ 2 seeds, seed-to-seed spread (see the section note).

    Returns ``mean``, ``lo``, ``hi``, ``half`` (same units as ``values``) and ``covers`` (words). A table
    with no spread at all gives a zero-width interval at its mean."""
    x = _as_table(values)
    half = float(np.sqrt(max(_weighted_forms(x, x, confidence, truncate=True), 0.0)))
    mean = float(x.mean())
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "half": half, "covers": covers(x.shape[0])}


def contrast_intervals(values: np.ndarray, contrasts: dict[str, tuple[int, int]], confidence: float = 0.95) -> dict:
    """:func:`crossed_interval` of column differences of ``(n_seeds, n_pairs, n_cols)`` ``values``:
    ``contrasts`` maps a name to ``(a, b)`` for column b − column a; returns name → interval dict."""
    values = np.asarray(values, dtype=float)
    values = values[None] if values.ndim == 2 else values
    return {name: crossed_interval(values[:, :, b] - values[:, :, a], confidence) for name, (a, b) in contrasts.items()}


def stage_intervals(values: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Every stage's mean and every stage-to-stage change of ``(n_pairs, n_stages)`` or ``(n_seeds,
    n_pairs, n_stages)`` ``values``, each with its :func:`crossed_interval`; arrays ``(n_stages,)``:
    ``mean``, ``lo``, ``hi``, ``change``, ``change_lo``, ``change_hi`` (NaN change at stage 0)."""
    values = np.asarray(values, dtype=float)
    values = values[None] if values.ndim == 2 else values
    n_stages = values.shape[2]
    out = {key: np.full(n_stages, np.nan) for key in ("mean", "lo", "hi", "change", "change_lo", "change_hi")}
    for k in range(n_stages):
        level = crossed_interval(values[:, :, k], confidence)
        out["mean"][k], out["lo"][k], out["hi"][k] = level["mean"], level["lo"], level["hi"]
        if k:
            change = crossed_interval(values[:, :, k] - values[:, :, k - 1], confidence)
            out["change"][k], out["change_lo"][k], out["change_hi"][k] = change["mean"], change["lo"], change["hi"]
    return out


def fieller_interval(numerator: np.ndarray, denominator: np.ndarray, confidence: float = 0.95) -> dict:
    """Ratio of means ``mean(numerator) / mean(denominator)`` of two ``(n_seeds, n_pairs)`` tables of the
    same pairs and seeds, with Fieller's interval (Fieller 1954, JRSS-B 16(2)) built on
    :func:`crossed_interval`: the r whose contrast N − r D has an interval containing 0, i.e.
    (N̄ − r D̄)² ≤ h²(r), where the squared half-width h² is quadratic in r through the mean cross-products.

    Returns ``ratio``, ``lo``, ``hi`` (NaN when the set is unbounded: the denominator is not
    distinguishable from 0, and a share of it means nothing) and ``covers``."""
    n, d = _as_table(numerator), _as_table(denominator)
    mean_n, mean_d = float(n.mean()), float(d.mean())
    ratio = mean_n / mean_d if mean_d != 0 else float("nan")
    out = {"ratio": ratio, "lo": float("nan"), "hi": float("nan"), "covers": covers(n.shape[0])}
    if not np.isfinite(ratio):
        return out
    h_nn = _weighted_forms(n, n, confidence, truncate=False)
    h_nd = _weighted_forms(n, d, confidence, truncate=False)
    h_dd = _weighted_forms(d, d, confidence, truncate=False)
    a = mean_d * mean_d - h_dd
    if a <= 0:  # the denominator's interval includes 0: the set is unbounded
        return out
    b = mean_n * mean_d - h_nd
    c = mean_n * mean_n - h_nn
    disc = b * b - a * c
    if disc < 0:
        return out
    root = np.sqrt(disc)
    out["lo"], out["hi"] = (b - root) / a, (b + root) / a
    return out


def pair_heterogeneity(values: np.ndarray, confidence: float = 0.95, min_move: float = 0.0) -> dict:
    """Do pairs move differently from one another beyond what the runs' own noise gives? For a
    ``(n_seeds, n_pairs)`` table of each pair's change (≥ 2 seeds; else every entry is NaN):

    ``p_value`` of the F test of the pair effect, F = ms_pair / ms_res on (P − 1, (S − 1)(P − 1)) df
    (a pair's change repeated by independent runs: pair-to-pair differences larger than seed-to-seed
    noise within a pair); ``share_up`` / ``share_down``: pairs whose seed-mean change lies above /
    below the seed-mean's own noise band, grand mean ± t · sqrt(ms_res / S) (t at ``confidence``, df of
    ms_res), and by at least ``min_move`` (metric units) from 0. Under no pair effect each share is
    about (1 − confidence) / 2 and the test rejects with probability 1 − confidence."""
    x = np.asarray(values, dtype=float)
    nan = {"p_value": float("nan"), "share_up": float("nan"), "share_down": float("nan"), "noise": float("nan")}
    if x.ndim != 2 or x.shape[0] < 2:
        return nan
    n_seeds, n_pairs = x.shape
    _, ms_pair, ms_res = _mean_squares(x)
    df_res = (n_seeds - 1) * (n_pairs - 1)
    from scipy import stats as scipy_stats

    if ms_res <= 0:
        p_value = 0.0 if ms_pair > 0 else 1.0
    else:
        p_value = float(scipy_stats.f.sf(ms_pair / ms_res, n_pairs - 1, df_res))
    noise = t_quantile(confidence, df_res) * np.sqrt(max(ms_res, 0.0) / n_seeds)
    pair_means = x.mean(axis=0)
    deviation = pair_means - pair_means.mean()
    up = (deviation > noise) & (pair_means > min_move)
    down = (deviation < -noise) & (pair_means < -min_move)
    return {"p_value": p_value, "share_up": float(up.mean()), "share_down": float(down.mean()), "noise": float(noise)}


def label_threshold(own_gain: float, min_share: float | None, min_effect: float) -> float:
    """|change| a label needs, continuous and non-decreasing in the objective's own-stage gain g:

        threshold(g) = max(min_effect, min_share · max(g, 0))

    (``min_effect`` alone where g is unknown — an objective not yet trained — or ``min_share`` is None).
    A gain's significance does not enter: the threshold cannot jump between two nearly equal gains."""
    if min_share is None or not np.isfinite(own_gain):
        return float(min_effect)
    return float(max(min_effect, min_share * max(own_gain, 0.0)))
