"""seqpref.metrics on hand-built numbers (expected values worked out by hand in the comments)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqpref import metrics

# three pairs: policy and base log-probs of chosen / rejected (nats)
LOGP_W = np.array([-10.0, -20.0, -5.0])
LOGP_L = np.array([-12.0, -15.0, -5.0])
REF_W = np.array([-11.0, -18.0, -6.0])
REF_L = np.array([-11.0, -18.0, -4.0])
# reward margin = (logp_w - ref_w) - (logp_l - ref_l):
#   pair 0: (-10+11) - (-12+11) = 1 - (-1) = 2
#   pair 1: (-20+18) - (-15+18) = -2 - 3 = -5
#   pair 2: (-5+6) - (-5+4) = 1 - (-1) = 2
EXPECTED_REWARD = np.array([2.0, -5.0, 2.0])


def test_reward_margin_hand_values():
    got = metrics.reward_margin(LOGP_W, LOGP_L, REF_W, REF_L)
    np.testing.assert_allclose(got, EXPECTED_REWARD)


def test_reward_margin_zero_at_base_and_sign_of_argument_order():
    # the policy is the base: margin exactly 0
    np.testing.assert_array_equal(metrics.reward_margin(REF_W, REF_L, REF_W, REF_L), np.zeros(3))
    # swapping chosen and rejected flips the sign
    np.testing.assert_allclose(metrics.reward_margin(LOGP_L, LOGP_W, REF_L, REF_W), -EXPECTED_REWARD)


def test_reward_margin_accepts_lists_and_series():
    got = metrics.reward_margin(list(LOGP_W), pd.Series(LOGP_L), tuple(REF_W), REF_L)
    np.testing.assert_allclose(np.asarray(got, dtype=float), EXPECTED_REWARD)


def test_dpo_margin_is_beta_times_reward_margin():
    np.testing.assert_allclose(metrics.dpo_margin(EXPECTED_REWARD, 0.1), [0.2, -0.5, 0.2])
    np.testing.assert_allclose(metrics.dpo_margin([1.5, -4.0], 2.0), [3.0, -8.0])


def test_correct_and_rel_accuracy():
    margins = np.array([2.0, -5.0, 0.0, 1e-9, -1e-9])
    np.testing.assert_array_equal(metrics.correct(margins), [1.0, 0.0, 0.5, 1.0, 0.0])
    assert metrics.correct(margins).dtype == np.float64
    # > 0 counts 1, a tie ½: (1 + 0 + 0.5 + 1 + 0) / 5
    assert metrics.rel_accuracy(margins) == pytest.approx(0.5)
    assert metrics.rel_accuracy(EXPECTED_REWARD) == pytest.approx(2 / 3)
    # the base model (stage 0): every margin is exactly 0, chance
    assert metrics.rel_accuracy(np.zeros(4)) == 0.5
    assert isinstance(metrics.rel_accuracy(margins), float)


def test_ln_margin_hand_values():
    # pair 0: -10/5 - (-12/4) = -2 + 3 = 1
    # pair 1: -20/10 - (-15/3) = -2 + 5 = 3
    # pair 2: -5/1 - (-5/2) = -5 + 2.5 = -2.5
    got = metrics.ln_margin(LOGP_W, LOGP_L, [5, 10, 1], [4, 3, 2])
    np.testing.assert_allclose(got, [1.0, 3.0, -2.5])


def test_ln_margin_is_reference_free():
    # not 0 at the base model, unlike reward_margin: it only looks at the policy's log-probs
    got = metrics.ln_margin(np.array([-4.0]), np.array([-9.0]), [2], [3])
    np.testing.assert_allclose(got, [-2.0 + 3.0])


@pytest.mark.parametrize(
    ("n_w", "n_l"),
    [([0, 1, 1], [1, 1, 1]), ([1, 1, 1], [1, 0, 1]), ([2, 2, 2], [2, 2, -1])],
)
def test_ln_margin_raises_on_zero_tokens(n_w, n_l):
    with pytest.raises(ValueError, match="token"):
        metrics.ln_margin(LOGP_W, LOGP_L, n_w, n_l)


def test_pair_metrics_adds_the_columns():
    frame = pd.DataFrame(
        {
            "pair_id": ["p0", "p1", "p2"],
            "logp_chosen": LOGP_W,
            "logp_rejected": LOGP_L,
            "ref_logp_chosen": REF_W,
            "ref_logp_rejected": REF_L,
            "n_tokens_chosen": [5, 10, 1],
            "n_tokens_rejected": [4, 3, 2],
        }
    )
    before = set(frame.columns)
    out = metrics.pair_metrics(frame, beta=0.5)
    assert out is frame  # in place, and returned
    assert set(frame.columns) - before == {"reward_margin", "dpo_margin", "ln_margin"}
    np.testing.assert_allclose(frame["reward_margin"], EXPECTED_REWARD)
    np.testing.assert_allclose(frame["dpo_margin"], 0.5 * EXPECTED_REWARD)
    np.testing.assert_allclose(frame["ln_margin"], [1.0, 3.0, -2.5])
    # the inputs are untouched
    np.testing.assert_array_equal(frame["logp_chosen"], LOGP_W)
    assert list(frame["pair_id"]) == ["p0", "p1", "p2"]


def test_pair_metrics_raises_on_zero_tokens():
    frame = pd.DataFrame(
        {
            "logp_chosen": [-1.0],
            "logp_rejected": [-2.0],
            "ref_logp_chosen": [-1.0],
            "ref_logp_rejected": [-2.0],
            "n_tokens_chosen": [0],
            "n_tokens_rejected": [1],
        }
    )
    with pytest.raises(ValueError):
        metrics.pair_metrics(frame, beta=0.1)
