"""The sham control: its pairs are a seeded half-swap of the real ones, and its table separates a
preference-specific change from drift on hand-built scores whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqpref import aggregate, controls, lab, tables
from test_aggregate import _scores

OPTIONS = aggregate.LabelOptions(n_boot=300, seed=0)


def _pairs_and_logps(n=101):
    pairs = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), n, seed=3, id_prefix="p")
    rng = np.random.default_rng(0)
    logps = pd.DataFrame({"pair_id": pairs["pair_id"], "logp_chosen": rng.normal(-20, 3, n), "logp_rejected": rng.normal(-25, 3, n),
                          "n_tokens_chosen": rng.integers(3, 9, n), "n_tokens_rejected": rng.integers(10, 19, n),
                          "truncated": False})
    return pairs, logps.sample(frac=1.0, random_state=1).reset_index(drop=True)  # a different row order


def test_sham_swaps_a_seeded_half_of_the_labels_and_nothing_else():
    pairs, logps = _pairs_and_logps()
    sham, sham_logps, swapped = controls.sham_pairs(pairs, logps, seed=4)
    assert swapped.sum() == len(pairs) // 2 == 50
    # a permutation of each pair's two responses: the swapped half exchanged, the rest untouched
    np.testing.assert_array_equal(sham["chosen"].where(~swapped, sham["rejected"]), pairs["chosen"])
    np.testing.assert_array_equal(sham.loc[swapped, "chosen"], pairs.loc[swapped, "rejected"])
    assert (sham[["pair_id", "prompt", "prompt_messages", "source"]].fillna("") == pairs[["pair_id", "prompt", "prompt_messages", "source"]].fillna("")).all().all()
    # the base log-probs (and token counts) travel with their response
    flipped = set(pairs.loc[swapped, "pair_id"])
    merged = logps.merge(sham_logps, on="pair_id", suffixes=("", "_sham"))
    rows = merged["pair_id"].isin(flipped)
    np.testing.assert_array_equal(merged.loc[rows, "logp_chosen_sham"], merged.loc[rows, "logp_rejected"])
    np.testing.assert_array_equal(merged.loc[rows, "n_tokens_rejected_sham"], merged.loc[rows, "n_tokens_chosen"])
    np.testing.assert_array_equal(merged.loc[~rows, "logp_chosen_sham"], merged.loc[~rows, "logp_chosen"])
    # seeded: the same seed swaps the same pairs whatever the row order; another seed, another half
    again = controls.sham_half(pairs["pair_id"].iloc[::-1], seed=4)[::-1]
    np.testing.assert_array_equal(again, swapped)
    other = controls.sham_half(pairs["pair_id"], seed=5)
    assert other.sum() == 50 and not np.array_equal(other, swapped)
    assert [list(f.columns) for f in (sham, sham_logps)] == [list(pairs.columns), list(logps.columns)]


def _sham(margins_at_2: dict) -> pd.DataFrame:
    """Sham stage-2 scores of order a-b: each objective's pairs around the given margins."""
    frame = _scores(margins={name: [0.0, 0.0, m] for name, m in margins_at_2.items()}, rng_seed=9)
    return frame[frame.stage == 2].reset_index(drop=True)


@pytest.mark.parametrize(
    ("real_a", "sham_a", "expected", "specific"),
    [
        ([0.0, 2.0, 0.5], 2.0, "specific_degradation", -1.5),  # the sham leaves a where it was: the drop is b's preferences
        ([0.0, 2.0, 0.5], 0.4, "drift", 0.1),  # the sham drops a just as much: drift
        ([0.0, 2.0, 0.5], 1.2, "specific_degradation", -0.7),  # part drift, part specific
        ([0.0, 2.0, 2.0], 2.0, "stable", 0.0),
        ([0.0, 2.0, 3.0], 2.0, "specific_transfer", 1.0),
    ],
)
def test_control_label_separates_specific_interference_from_drift(real_a, sham_a, expected, specific):
    pairs = _scores(margins={"a": real_a, "b": [0.0, 0.0, 2.0]})
    sham = _sham({"a": sham_a, "b": 1.0})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    table = controls.control_rows(pairs, sham, summary, OPTIONS)
    assert list(table.columns) == tables.CONTROLS.names
    row = table.set_index("objective").loc["a"]
    assert "b" not in table["objective"].tolist()  # the objective stage 2 trains has no control row
    assert row["role"] == "earlier" and row["stage"] == 2 and row["trained_objective"] == "b"
    assert row["change_real"] == pytest.approx(real_a[2] - real_a[1], abs=0.05)
    assert row["change_sham"] == pytest.approx(sham_a - real_a[1], abs=0.05)
    assert row["specific"] == pytest.approx(row["change_real"] - row["change_sham"], abs=1e-9)
    assert row["specific"] == pytest.approx(specific, abs=0.05)
    assert row["specific_lo"] < row["specific"] < row["specific_hi"] or expected == "stable"
    assert row["own_gain"] == pytest.approx(2.0, abs=0.05)
    assert row["specific_share"] == pytest.approx(specific / 2.0, abs=0.05)
    assert row["control_label"] == expected


def test_control_rows_need_the_same_pairs():
    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    sham = _sham({"a": 1.0, "b": 1.0}).iloc[5:]
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    with pytest.raises(ValueError, match="same pairs"):
        controls.control_rows(pairs, sham, summary, OPTIONS)


def test_control_label_rules():
    assert controls.control_label("degradation", "stable", "stable", True) == "inconclusive"
    assert controls.control_label("degradation", "degradation", "stable", True) == "drift"
    # a difference that is merely not significant is not shown to be small: no "drift" then
    assert controls.control_label("degradation", "degradation", "stable", False) == "inconclusive"
    assert controls.control_label("degradation", "positive_transfer", "stable", True) == "inconclusive"
    assert controls.control_label("stable", "degradation", "positive_transfer", False) == "specific_transfer"
    assert controls.control_label("redistribution", "stable", "stable", True) == "stable"
    assert set(controls.CONTROL_LABELS) == {"specific_degradation", "specific_transfer", "drift", "inconclusive", "stable"}


def test_control_rows_report_the_shams_effect_on_its_own_objective():
    """The neutrality check: stage k's own objective under the sham. Here b's pairs sit at 0 after
    stage 1 and at 1.0 after the sham: the sham was not neutral, and the row says so."""
    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    row = controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS).iloc[0]
    assert row["sham_own_change"] == pytest.approx(1.0, abs=0.05)
    assert row["sham_own_change_lo"] > 0.9
    neutral = controls.control_rows(pairs, _sham({"a": 2.0, "b": 0.0}), summary, OPTIONS).iloc[0]
    assert neutral["sham_own_change_lo"] < 0 < neutral["sham_own_change_hi"]


def test_control_rows_with_rel_accuracy_and_every_seed():
    pairs = _scores(margins={"a": [0.0, 2.0, -0.5], "b": [0.0, 0.0, 2.0]})
    options = aggregate.LabelOptions(metric="rel_accuracy", n_boot=300, seed=0)
    summary = aggregate.summarise(pairs, options)["summary"]
    row = controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, options).iloc[0]
    assert row["metric"] == "rel_accuracy" and row["change_real"] == pytest.approx(-1.0)  # 1 → 0: every pair flipped
    assert row["control_label"] == "specific_degradation"
    two_seeds = pd.concat([pairs, pairs.assign(seed=1)], ignore_index=True)
    summary = aggregate.summarise(two_seeds, OPTIONS)["summary"]
    with pytest.raises(ValueError, match="every seed needs its sham"):
        controls.control_rows(two_seeds, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS)


def test_sham_control_figure_draws_real_and_sham_bars_with_the_control_label():
    import matplotlib

    matplotlib.use("Agg")
    from seqpref.figures import sham_control

    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    table = controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS)
    fig = sham_control.draw(table)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 1) for p in ax.patches)
    assert heights == [-1.5, 0.0]  # real: 0.5 - 2.0; sham: 2.0 - 2.0
    assert "specific ▼" in [t.get_text() for t in ax.texts]
    with pytest.raises(ValueError, match="no rows"):
        sham_control.draw(table.iloc[:0])


def test_controls_report_how_far_the_stage_and_its_sham_moved_the_adapter():
    from seqpref.train import CHANGE_NORM

    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    log = pd.DataFrame({"setting": "conflicting", "method": "dpo", "order": "a-b", "seed": 0, "stage": 2,
                        "objective": "b", "step": [16, 16], "metric": [CHANGE_NORM, "loss"], "value": [0.8, 0.6]})
    movement = pd.concat([controls.change_norms(log, "real"), controls.change_norms(log.assign(value=[0.2, 0.7]), "sham")])
    row = controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS, movement).iloc[0]
    assert (row["change_norm_real"], row["change_norm_sham"]) == (0.8, 0.2)
    assert row["change_norm_ratio"] == pytest.approx(0.25)
    assert np.isnan(controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS).iloc[0]["change_norm_ratio"])
