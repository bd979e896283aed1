"""The sham control: its pairs are a seeded half-swap of the real ones, and its table separates a
preference-specific change from drift on hand-built scores whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_aggregate import _scores

from seqpref import aggregate, controls, lab, tables
from seqpref.options import LabelOptions

OPTIONS = LabelOptions(n_boot=300, seed=0)


def _pairs_and_logps(n=101):
    pairs = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), n, seed=3, id_prefix="p")
    rng = np.random.default_rng(0)
    logps = pd.DataFrame(
        {
            "pair_id": pairs["pair_id"],
            "logp_chosen": rng.normal(-20, 3, n),
            "logp_rejected": rng.normal(-25, 3, n),
            "n_tokens_chosen": rng.integers(3, 9, n),
            "n_tokens_rejected": rng.integers(10, 19, n),
            "truncated": False,
        }
    )
    return pairs, logps.sample(frac=1.0, random_state=1).reset_index(drop=True)  # a different row order


def test_sham_swaps_a_seeded_half_of_the_labels_and_nothing_else():
    pairs, logps = _pairs_and_logps()
    sham, sham_logps, swapped = controls.sham_pairs(pairs, logps, seed=4)
    assert swapped.sum() == len(pairs) // 2 == 50
    # a permutation of each pair's two responses: the swapped half exchanged, the rest untouched
    np.testing.assert_array_equal(sham["chosen"].where(~swapped, sham["rejected"]), pairs["chosen"])
    np.testing.assert_array_equal(sham.loc[swapped, "chosen"], pairs.loc[swapped, "rejected"])
    assert (
        (
            sham[["pair_id", "prompt", "prompt_messages", "source"]].fillna("")
            == pairs[["pair_id", "prompt", "prompt_messages", "source"]].fillna("")
        )
        .all()
        .all()
    )
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


def _sham(margins_at_2: dict, pairs: pd.DataFrame | None = None, noise: float = 0.02) -> pd.DataFrame:
    """Sham stage-2 scores of order a-b. With ``pairs`` (the real run), each objective's sham scores are
    its real stage-1 scores moved to the given mean plus a little per-pair noise, so the sham and the
    real stages share their pairs' idiosyncrasies as a sham trained from the same stage-1 adapter does;
    without, independent pairs around the given margins."""
    if pairs is None:
        frame = _scores(margins={name: [0.0, 0.0, m] for name, m in margins_at_2.items()}, rng_seed=9)
        return frame[frame.stage == 2].reset_index(drop=True)
    rng = np.random.default_rng(11)
    parts = []
    for objective, margin in margins_at_2.items():
        before = pairs[(pairs.stage == 1) & (pairs.objective == objective)].copy()
        shift = margin - before["reward_margin"].mean() + rng.normal(0.0, noise, len(before))
        before["reward_margin"] = before["reward_margin"] + shift
        before["dpo_margin"] = before["dpo_margin"] + 0.1 * shift
        before["logp_chosen"] = before["logp_chosen"] + shift
        parts.append(before.assign(stage=2))
    return pd.concat(parts, ignore_index=True)


def _movement(ratio: float) -> pd.DataFrame:
    """change_norms of stage 2 of order a-b (seed 0) and of its sham, the sham moving ``ratio`` as far."""
    from seqpref.options import CHANGE_NORM

    log = pd.DataFrame(
        {
            "setting": "conflicting",
            "method": "dpo",
            "order": "a-b",
            "seed": 0,
            "stage": 2,
            "objective": "b",
            "step": [16],
            "metric": [CHANGE_NORM],
            "value": [1.0],
        }
    )
    return pd.concat([controls.change_norms(log, "real"), controls.change_norms(log.assign(value=[ratio]), "sham")])


@pytest.mark.parametrize(
    ("real_a", "sham_a", "expected", "specific"),
    [
        (
            [0.0, 2.0, 0.5],
            2.0,
            "specific_degradation",
            -1.5,
        ),  # the sham leaves a where it was: the drop is b's preferences
        ([0.0, 2.0, 0.5], 0.5, "drift", 0.0),  # the sham drops a just as much: drift
        ([0.0, 2.0, 0.5], 1.2, "specific_degradation", -0.7),  # part drift, part specific
        ([0.0, 2.0, 2.0], 2.0, "stable", 0.0),
        ([0.0, 2.0, 3.0], 2.0, "specific_transfer", 1.0),
    ],
)
def test_control_label_separates_specific_interference_from_drift(real_a, sham_a, expected, specific):
    """A valid sham (its own objective b stays at its stage-1 margin; it moves the adapter as far as the
    real stage), with scores paired to the real stages' pair by pair."""
    pairs = _scores(margins={"a": real_a, "b": [0.0, 0.0, 2.0]})
    sham = _sham({"a": sham_a, "b": 0.0}, pairs)
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    table = controls.control_rows(pairs, sham, summary, OPTIONS, _movement(1.0))
    assert list(table.columns) == tables.CONTROLS.names
    row = table.set_index("objective").loc["a"]
    assert "b" not in table["objective"].tolist()  # the objective stage 2 trains has no control row
    assert row["role"] == "earlier" and row["stage"] == 2 and row["trained_objective"] == "b"
    assert row["change_real"] == pytest.approx(real_a[2] - real_a[1], abs=0.05)
    assert row["change_sham"] == pytest.approx(sham_a - real_a[1], abs=0.05)
    assert row["specific"] == pytest.approx(row["change_real"] - row["change_sham"], abs=1e-9)
    assert row["specific"] == pytest.approx(specific, abs=0.05)
    assert row["specific_lo"] < row["specific"] < row["specific_hi"]
    assert row["own_gain"] == pytest.approx(2.0, abs=0.05)
    if specific:
        assert row["specific_share"] == pytest.approx(specific / 2.0, abs=0.05)
    assert row["real_own_change"] == pytest.approx(2.0, abs=0.05) and abs(row["sham_own_change"]) < 0.05
    assert pd.isna(row["control_invalid_reason"])
    assert row["control_label"] == expected


def test_a_pure_drift_proportional_to_distance_is_drift_or_no_verdict():
    """The earlier objective loses 0.75 nats per unit of distance the adapter moves, whatever the labels
    (pure drift). A sham that moves as far loses as much: drift. A sham that moves 0.4x as far loses 0.4x
    as much, and read naively the rest (−0.9) would be `specific_degradation`: the control is then not
    valid, and the label says so instead."""
    pairs = _scores(margins={"a": [0.0, 2.0, 2.0 - 1.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    for ratio, expected in ((1.0, "drift"), (0.4, "control_invalid")):
        sham = _sham({"a": 2.0 - 1.5 * ratio, "b": 0.0}, pairs)
        row = controls.control_rows(pairs, sham, summary, OPTIONS, _movement(ratio)).iloc[0]
        assert row["control_label"] == expected, (ratio, row["specific"], row["control_invalid_reason"])
    assert "0.40x as far" in row["control_invalid_reason"]


def test_a_sham_that_teaches_the_preference_gives_no_control_label():
    """The real-model case by construction: stage k's objective conflicts with the earlier one, and the
    half-swapped sham moved its own objective almost as far as the real stage (+20 vs +22 nats), so it
    taught the preference too and its change of the earlier objective is no null: never `drift`."""
    pairs = _scores(margins={"a": [0.0, 25.0, 3.0], "b": [0.0, 0.0, 22.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    sham = _sham({"a": 5.0, "b": 20.0}, pairs)
    row = controls.control_rows(pairs, sham, summary, OPTIONS, _movement(1.0)).iloc[0]
    assert row["label_real"] == "degradation" and row["label_sham"] == "degradation"
    assert row["control_label"] == "control_invalid"
    assert "taught a preference" in row["control_invalid_reason"]


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
    assert controls.control_label("degradation", "degradation", "stable", True, "a reason") == "control_invalid"
    assert set(controls.CONTROL_LABELS) == {
        "specific_degradation",
        "specific_transfer",
        "drift",
        "inconclusive",
        "stable",
        "control_invalid",
    }


def test_control_validity_bounds():
    options = LabelOptions()
    assert controls.control_validity(0.1, 2.0, 1.0, options) is None  # 0.1 ≤ 0.25 × 2
    assert "taught a preference" in controls.control_validity(0.6, 2.0, 1.0, options)
    assert controls.control_validity(0.05, 0.0, 1.0, options) is None  # floor: 0.25 × min_effect
    assert "outside [0.8, 1.25]" in controls.control_validity(0.0, 2.0, 1.3, options)
    assert "not measured" in controls.control_validity(0.0, 2.0, float("nan"), options)


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
    options = LabelOptions(metric="rel_accuracy", n_boot=300, seed=0)
    summary = aggregate.summarise(pairs, options)["summary"]
    row = controls.control_rows(pairs, _sham({"a": 2.0, "b": 0.0}, pairs), summary, options, _movement(1.0)).iloc[0]
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
    table = controls.control_rows(pairs, _sham({"a": 2.0, "b": 0.0}, pairs), summary, OPTIONS, _movement(1.0))
    fig = sham_control.draw(table)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 1) for p in ax.patches)
    assert heights == [-1.5, 0.0]  # real: 0.5 - 2.0; sham: 2.0 - 2.0
    assert "specific ▼" in [t.get_text() for t in ax.texts]
    with pytest.raises(ValueError, match="no rows"):
        sham_control.draw(table.iloc[:0])


def test_controls_report_how_far_the_stage_and_its_sham_moved_the_adapter():
    from seqpref.options import CHANGE_NORM

    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    log = pd.DataFrame(
        {
            "setting": "conflicting",
            "method": "dpo",
            "order": "a-b",
            "seed": 0,
            "stage": 2,
            "objective": "b",
            "step": [16, 16],
            "metric": [CHANGE_NORM, "loss"],
            "value": [0.8, 0.6],
        }
    )
    movement = pd.concat(
        [controls.change_norms(log, "real"), controls.change_norms(log.assign(value=[0.2, 0.7]), "sham")]
    )
    row = controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS, movement).iloc[0]
    assert (row["change_norm_real"], row["change_norm_sham"]) == (0.8, 0.2)
    assert row["change_norm_ratio"] == pytest.approx(0.25)
    assert np.isnan(
        controls.control_rows(pairs, _sham({"a": 2.0, "b": 1.0}), summary, OPTIONS).iloc[0]["change_norm_ratio"]
    )


def _change_norm_log(path, value):
    frame = pd.DataFrame(
        [
            {
                "setting": "s",
                "method": "dpo",
                "order": "a-b",
                "seed": 0,
                "stage": 2,
                "objective": "b",
                "step": 4,
                "metric": "adapter/change_norm",
                "value": value,
            }
        ]
    )
    tables.write_table(frame, path, tables.TRAINING, {"test": True})


def test_match_distance_scales_the_learning_rate_by_the_pilots_shortfall(tmp_path):
    _change_norm_log(tmp_path / "real.parquet", 0.9)
    calls = []

    def pilot(out_dir, log_path):
        calls.append(out_dir)
        assert tmp_path in Path(out_dir).parents  # scratch beside the sham's folder
        return 0.3

    scale, record = controls.match_distance(
        pilot, str(tmp_path / "real.parquet"), str(tmp_path / "sham2"), str(tmp_path / "checkpoints")
    )
    assert scale == pytest.approx(3.0) and record["distance_match"]["pilot_change_norm"] == 0.3
    assert not any(p.name.startswith("pilot-") for p in tmp_path.iterdir())  # the pilot's scratch is gone
    # a resumed sham reads the scale it had: no second pilot
    again, _ = controls.match_distance(
        pilot, str(tmp_path / "real.parquet"), str(tmp_path / "sham2"), str(tmp_path / "checkpoints")
    )
    assert again == scale and len(calls) == 1


def test_a_real_log_without_its_change_norm_is_named(tmp_path):
    _change_norm_log(tmp_path / "real.parquet", 0.9)
    frame = pd.read_parquet(tmp_path / "real.parquet").assign(metric="loss")
    tables.write_table(frame, tmp_path / "bad.parquet", tables.TRAINING, {"test": True})
    with pytest.raises(ValueError, match="bad.parquet.*change_norm"):
        controls.real_change_norm(str(tmp_path / "bad.parquet"))


def test_a_kept_distance_match_is_measured_again_for_another_real_stage(tmp_path):
    """A sham killed after its pilot keeps the scale beside its checkpoints; a rerun after the real stage was
    retrained (another distance) or with other inputs must not reuse it."""
    _change_norm_log(tmp_path / "real.parquet", 0.9)
    calls = []

    def pilot(out_dir, log_path):
        calls.append(out_dir)
        return 0.3

    args = (pilot, str(tmp_path / "real.parquet"), str(tmp_path / "sham2"), str(tmp_path / "checkpoints"))
    controls.match_distance(*args, {"learning_rate": 0.001})
    controls.match_distance(*args, {"learning_rate": 0.002})  # another configured rate
    assert len(calls) == 2
    _change_norm_log(tmp_path / "real.parquet", 1.2)  # the real stage was retrained
    scale, _ = controls.match_distance(*args, {"learning_rate": 0.002})
    assert len(calls) == 3 and scale == pytest.approx(4.0)
