"""The tables' intervals cover as stated with few seeds and labels keep their false-positive rate, on
``benchmarks/calibration.py``'s simulator (fixed draws: the same counts on every machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import calibration  # noqa: E402

from seqpref import stats  # noqa: E402
from seqpref.options import LabelOptions

REPS = 300


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
@pytest.mark.parametrize("ratio", [0.0, 2.0, 10.0])
def test_the_tables_interval_covers_at_least_93_percent(n_seeds, ratio):
    rng = np.random.default_rng([n_seeds, int(ratio * 10)])
    assert calibration.coverage(calibration.crossed, n_seeds, ratio, REPS, rng) >= 0.93


def test_the_pooled_bootstrap_it_replaces_does_not():
    """The check can fail: the two-level bootstrap the tables used before, 2 seeds that disagree."""
    rng = np.random.default_rng(7)
    assert calibration.coverage(calibration.bootstrap, 2, 10.0, 150, rng) < 0.85


@pytest.mark.parametrize("n_seeds", [2, 3])
def test_share_of_own_gain_covers_at_least_93_percent(n_seeds):
    rng = np.random.default_rng([n_seeds, 99])
    assert calibration.fieller_coverage(n_seeds, 5.0, REPS, rng) >= 0.93


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
def test_hypervolume_covers_at_least_93_percent(n_seeds):
    rng = np.random.default_rng([n_seeds, 41])
    assert calibration.hypervolume_coverage(n_seeds, 5.0, REPS, rng) >= 0.93


@pytest.mark.parametrize("n_seeds", [1, 2, 3])
def test_no_label_but_stable_more_than_5_percent_under_no_change(n_seeds):
    rng = np.random.default_rng([n_seeds, 5])
    assert calibration.false_label(n_seeds, 10.0, REPS, rng, LabelOptions()) <= 0.05
    # and with no size threshold at all, the rate is the interval's own non-coverage at 0
    loose = LabelOptions(min_effect=0.0, min_share=None)
    assert calibration.false_label(n_seeds, 10.0, REPS, rng, loose) <= 0.07


def test_one_seed_says_its_interval_covers_pairs_only():
    x = np.random.default_rng(0).normal(size=(1, 50))
    assert stats.crossed_interval(x)["covers"] == "pairs (1 seed)"
    assert stats.crossed_interval(np.vstack([x, x + 1]))["covers"] == "pairs and seeds (2 seeds)"


def test_fieller_is_unbounded_where_the_gain_is_not_shown():
    rng = np.random.default_rng(1)
    gain = rng.normal(0.0, 1.0, size=(2, 40))
    share = stats.fieller_interval(rng.normal(size=(2, 40)), gain)
    assert np.isnan(share["lo"]) and np.isnan(share["hi"])


def test_crossed_interval_by_hand():
    """Two seeds of four pairs, worked out by hand: seed means 2.5 and 4.5 (their variance 2), pair means
    2..5, no residual; half-width² = t(1)² · 2/2 + t(3)² · (ms_pair / 2) / 4, ms_pair = 2 · 5 / 3."""
    from scipy import stats as scipy_stats

    x = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])
    ci = stats.crossed_interval(x)
    t1, t3 = scipy_stats.t.ppf(0.975, 1), scipy_stats.t.ppf(0.975, 3)
    half = np.sqrt(t1**2 * 2.0 / 2 + t3**2 * (2 * 5 / 3 / 2) / 4)
    assert ci["mean"] == 3.5 and ci["hi"] - 3.5 == pytest.approx(half, rel=1e-12)
