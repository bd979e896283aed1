"""seqpref.stats: the paired bootstrap, checked against numpy means and a naive loop bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from seqpref import stats


def _values(n_pairs: int, n_stages: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=np.arange(n_stages) * 0.5, scale=1.0, size=(n_pairs, n_stages))


def test_bootstrap_indices_shape_range_and_seed():
    idx = stats.bootstrap_indices(7, 50, seed=3)
    assert idx.shape == (50, 7)
    assert idx.min() >= 0 and idx.max() <= 6
    np.testing.assert_array_equal(idx, stats.bootstrap_indices(7, 50, seed=3))
    assert not np.array_equal(idx, stats.bootstrap_indices(7, 50, seed=4))
    with pytest.raises(ValueError):
        stats.bootstrap_indices(0, 10, seed=0)


def test_mean_and_change_equal_numpy():
    values = _values(120, 4)
    ci = stats.paired_stage_ci(values, n_boot=200, seed=0)
    np.testing.assert_allclose(ci["mean"], values.mean(axis=0), rtol=0, atol=1e-12)
    assert np.isnan(ci["change"][0]) and np.isnan(ci["change_lo"][0]) and np.isnan(ci["change_hi"][0])
    expected_change = [values[:, k].mean() - values[:, k - 1].mean() for k in range(1, 4)]
    np.testing.assert_allclose(ci["change"][1:], expected_change, rtol=0, atol=1e-12)
    for key in ("mean", "lo", "hi", "change", "change_lo", "change_hi"):
        assert ci[key].shape == (4,), key


def test_ci_contains_the_mean():
    values = _values(300, 3)
    ci = stats.paired_stage_ci(values, n_boot=500, seed=2)
    assert np.all(ci["lo"] < ci["mean"]) and np.all(ci["mean"] < ci["hi"])
    assert np.all(ci["change_lo"][1:] < ci["change"][1:]) and np.all(ci["change"][1:] < ci["change_hi"][1:])


def test_ci_narrows_with_more_pairs():
    small = stats.paired_stage_ci(_values(50, 2, seed=5), n_boot=500, seed=0)
    large = stats.paired_stage_ci(_values(2000, 2, seed=6), n_boot=500, seed=0)
    width_small = small["hi"] - small["lo"]
    width_large = large["hi"] - large["lo"]
    # the width scales as 1/sqrt(n): sqrt(2000/50) ≈ 6.3; ask for at least 3x
    assert np.all(width_large * 3 < width_small)
    change_small = small["change_hi"][1] - small["change_lo"][1]
    change_large = large["change_hi"][1] - large["change_lo"][1]
    assert change_large * 3 < change_small


def test_higher_confidence_gives_wider_interval():
    values = _values(200, 2)
    narrow = stats.paired_stage_ci(values, n_boot=1000, confidence=0.5, seed=0)
    wide = stats.paired_stage_ci(values, n_boot=1000, confidence=0.99, seed=0)
    assert np.all(wide["hi"] - wide["lo"] > narrow["hi"] - narrow["lo"])


def test_paired_change_ci_much_narrower_than_unpaired():
    rng = np.random.default_rng(11)
    n = 200
    stage0 = rng.normal(0.0, 5.0, size=n)  # large between-pair spread
    stage1 = stage0 + 0.1 + rng.normal(0.0, 0.01, size=n)  # every pair moves by ~0.1
    values = np.column_stack([stage0, stage1])
    ci = stats.paired_stage_ci(values, n_boot=1000, seed=0)

    # the per-stage intervals overlap heavily...
    assert ci["lo"][1] < ci["hi"][0] and ci["lo"][0] < ci["hi"][1]
    # ...but the paired change interval excludes 0 and holds the true shift
    assert ci["change_lo"][1] > 0
    assert ci["change_lo"][1] < 0.1 < ci["change_hi"][1]
    paired_width = ci["change_hi"][1] - ci["change_lo"][1]

    # unpaired reference: resample each stage independently
    n_boot = 1000
    i0 = stats.bootstrap_indices(n, n_boot, seed=1)
    i1 = stats.bootstrap_indices(n, n_boot, seed=2)
    unpaired = np.array([stage1[b1].mean() - stage0[b0].mean() for b0, b1 in zip(i0, i1)])
    u_lo, u_hi = np.quantile(unpaired, [0.025, 0.975])
    assert u_lo < 0 < u_hi  # the unpaired interval cannot tell the shift from 0
    assert paired_width * 50 < u_hi - u_lo


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_matches_naive_loop_bootstrap(confidence):
    values = _values(73, 3, seed=9)
    n_boot, seed = 300, 42
    ci = stats.paired_stage_ci(values, n_boot=n_boot, confidence=confidence, seed=seed)

    indices = stats.bootstrap_indices(values.shape[0], n_boot, seed)
    boot = np.empty((n_boot, values.shape[1]))
    for b in range(n_boot):
        for k in range(values.shape[1]):
            sample = [values[i, k] for i in indices[b]]
            boot[b, k] = sum(sample) / len(sample)
    changes = boot[:, 1:] - boot[:, :-1]
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    c_lo, c_hi = np.quantile(changes, [alpha, 1 - alpha], axis=0)

    np.testing.assert_allclose(ci["lo"], lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ci["hi"], hi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ci["change_lo"][1:], c_lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ci["change_hi"][1:], c_hi, rtol=1e-12, atol=1e-12)


def test_chunking_does_not_change_result():
    # more resamples than one chunk (256): the chunked gather must cover every resample
    values = _values(40, 2, seed=3)
    n_boot = 700
    ci = stats.paired_stage_ci(values, n_boot=n_boot, seed=7)
    indices = stats.bootstrap_indices(40, n_boot, 7)
    boot = np.stack([values[idx].mean(axis=0) for idx in indices])
    np.testing.assert_allclose(ci["lo"], np.quantile(boot, 0.025, axis=0), rtol=1e-12)
    np.testing.assert_allclose(ci["hi"], np.quantile(boot, 0.975, axis=0), rtol=1e-12)


def test_single_stage_has_nan_change():
    values = _values(30, 1)
    ci = stats.paired_stage_ci(values, n_boot=200, seed=0)
    assert ci["mean"].shape == (1,)
    assert np.isnan(ci["change"]).all() and np.isnan(ci["change_lo"]).all() and np.isnan(ci["change_hi"]).all()


def test_nan_input_raises():
    values = _values(20, 2)
    values[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stats.paired_stage_ci(values, n_boot=100)


def test_one_dimensional_input_raises():
    with pytest.raises(ValueError, match="shape"):
        stats.paired_stage_ci(np.arange(10.0), n_boot=100)


@pytest.mark.parametrize(
    ("change", "lo", "hi", "min_effect", "expected"),
    [
        (-1.0, -1.5, -0.5, 0.25, "degradation"),
        (1.0, 0.5, 1.5, 0.25, "positive_transfer"),
        (-1.0, -2.0, 0.1, 0.25, "stable"),  # CI includes 0
        (1.0, -0.1, 2.0, 0.25, "stable"),  # CI includes 0
        (-0.1, -0.15, -0.05, 0.25, "stable"),  # CI excludes 0, effect too small
        (0.1, 0.05, 0.15, 0.25, "stable"),  # CI excludes 0, effect too small
        (-0.25, -0.3, -0.2, 0.25, "degradation"),  # |change| == min_effect counts
        (0.25, 0.2, 0.3, 0.25, "positive_transfer"),  # |change| == min_effect counts
        (-0.2499, -0.3, -0.2, 0.25, "stable"),  # just below the boundary
        (0.2499, 0.2, 0.3, 0.25, "stable"),
        (-1.0, -1.5, 0.0, 0.25, "stable"),  # hi == 0: the CI does not exclude 0
        (1.0, 0.0, 1.5, 0.25, "stable"),  # lo == 0
        (0.01, 0.005, 0.02, 0.0, "positive_transfer"),  # min_effect 0: any excluded-0 change
        (-0.01, -0.02, -0.005, 0.0, "degradation"),
    ],
)
def test_label_change(change, lo, hi, min_effect, expected):
    assert stats.label_change(change, lo, hi, min_effect) == expected


def test_two_level_bootstrap_equals_a_loop_over_seeds_and_pairs():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, 40, 2))  # 3 seeds × 40 pairs × 2 stages
    resampler = stats.Resampler.draw(40, 200, seed=2, n_seeds=3)
    indices = stats.bootstrap_indices(40, 200, 2)
    assert resampler.seed_counts.sum(axis=1) == pytest.approx(np.full(200, 3))
    expected = np.stack(
        [
            sum(resampler.seed_counts[b, s] * values[s, indices[b]].mean(axis=0) for s in range(3)) / 3
            for b in range(200)
        ]
    )
    assert resampler.means(values) == pytest.approx(expected, abs=1e-12)


def test_identical_seeds_pool_to_the_single_seed_ci_and_differing_seeds_widen_it():
    rng = np.random.default_rng(6)
    one = rng.normal(size=(60, 2))
    single = stats.paired_stage_ci(one, n_boot=500, seed=1)
    same = stats.paired_stage_ci(np.stack([one, one]), n_boot=500, seed=1)
    assert same["lo"] == pytest.approx(single["lo"]) and same["hi"] == pytest.approx(single["hi"])
    shifted = np.stack([one - 1.0, one + 1.0])  # the seeds disagree by 2 units
    pooled = stats.paired_stage_ci(shifted, n_boot=500, seed=1)
    assert pooled["mean"] == pytest.approx(single["mean"])
    assert (pooled["hi"] - pooled["lo"] > 3 * (single["hi"] - single["lo"])).all()
    assert pooled["change_hi"] - pooled["change_lo"] == pytest.approx(
        single["change_hi"] - single["change_lo"], nan_ok=True
    )
