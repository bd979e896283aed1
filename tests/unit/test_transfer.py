"""Backward / forward transfer, the quartile decomposition, flips and the redistribution label on
hand-built matrices whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqpref import aggregate, tables, transfer
from seqpref.options import LabelOptions


def test_backward_forward_on_a_hand_built_stage_matrix():
    # 4 pairs × stages 0..3; the objective is trained at stage 2
    values = np.array(
        [
            [0.0, 0.5, 2.0, 1.0],
            [0.0, 0.1, 1.0, 0.0],
            [0.0, -0.2, 3.0, 2.5],
            [0.0, 0.4, 2.0, 0.5],
        ]
    )
    row = transfer.backward_forward(values, own_stage=2, confidence=0.95)
    # bwt = mean(stage 3 - stage 2) = mean(-1, -1, -0.5, -1.5) = -1.0
    assert row["bwt"] == pytest.approx(-1.0)
    # fwt = mean(stage 1 - stage 0) = mean(0.5, 0.1, -0.2, 0.4) = 0.2
    assert row["fwt"] == pytest.approx(0.2)
    # one seed: the t interval over the 4 pairs (3 df): bwt's changes -1, -1, -0.5, -1.5 have sd 0.408
    assert row["bwt_hi"] - row["bwt"] == pytest.approx(3.182446 * np.std([-1, -1, -0.5, -1.5], ddof=1) / 2, rel=1e-5)
    assert row["interval_covers"] == "pairs (1 seed)"
    assert (row["own_stage"], row["last_stage"]) == (2, 3)


def test_first_and_last_objectives_have_zero_forward_and_backward_transfer():
    values = np.random.default_rng(0).normal(size=(20, 3))
    first = transfer.backward_forward(values, 1, 0.95)
    assert first["fwt"] == 0.0 and first["fwt_lo"] == 0.0
    last = transfer.backward_forward(values, 2, 0.95)
    assert last["bwt"] == 0.0
    with pytest.raises(ValueError):
        transfer.backward_forward(values, 3, 0.95)


def test_quartile_assignment_splits_by_own_stage_margin():
    own = np.array([5.0, -1.0, 3.0, 0.0, 2.0, 4.0, 1.0, -2.0])
    # sorted: -2, -1, 0, 1 | ... two pairs per quartile
    assert transfer.quartile_of(own).tolist() == [4, 1, 3, 2, 3, 4, 2, 1]
    tied = transfer.quartile_of(np.zeros(8))
    assert sorted(np.bincount(tied)[1:].tolist()) == [2, 2, 2, 2]
    with pytest.raises(ValueError):
        transfer.quartile_of(np.ones(3))


def test_quartile_rows_count_falls_and_flips():
    # own stage 1, then stage 2; 8 pairs, two per quartile
    own = np.array([-2.0, -1.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    after = np.array([-3.0, 1.0, -0.5, 2.0, 1.0, 4.0, -1.0, 4.0])
    values = np.column_stack([np.zeros(8), own, after])
    rows = {r["quartile"]: r for r in transfer.quartile_rows(values, 1, 0.95)}
    assert [rows[q]["n"] for q in range(1, 5)] == [2, 2, 2, 2]
    # Q1: -2→-3 (fell, no flip), -1→1 (rose, flip)
    assert rows[1]["share_fell"] == 0.5 and rows[1]["share_flipped"] == 0.5
    assert rows[1]["mean_change"] == pytest.approx((-1.0 + 2.0) / 2)
    # Q2: 0.5→-0.5 (fell, flip), 1→2 (rose)
    assert rows[2]["share_fell"] == 0.5 and rows[2]["share_flipped"] == 0.5
    # Q3: 2→1 (fell), 3→4 (rose); no flips
    assert rows[3]["share_fell"] == 0.5 and rows[3]["share_flipped"] == 0.0
    # Q4: 4→-1 (fell, flip), 5→4 (fell)
    assert rows[4]["share_fell"] == 1.0 and rows[4]["share_flipped"] == 0.5
    assert rows[4]["own_margin_min"] == 4.0 and rows[4]["own_margin_max"] == 5.0


def _two_seeds(later_from) -> np.ndarray:
    """(2 seeds, 400 pairs, 3 stages): a pair's learnability mu is shared by the seeds; each seed's own-stage
    margin adds a large seed-specific fit eps; ``later_from(mu, own)`` gives the margin after stage 2."""
    rng = np.random.default_rng(0)
    mu = rng.normal(2.0, 1.0, 400)
    values = []
    for _ in range(2):
        own = mu + rng.normal(0.0, 2.0, 400)
        values.append(np.column_stack([np.zeros(400), own, later_from(mu, own)]))
    return np.stack(values)


def _q4_minus_q1(rows, assignment):
    changes = {r["quartile"]: r["mean_change"] for r in rows if r["assignment"] == assignment}
    return changes[4] - changes[1]


def test_other_seed_quartiles_expose_regression_to_the_mean():
    """Stage 2 erases each seed's own fit (later = mu): binned on their own margin, the top quartile
    seems to lose most (Q4 − Q1 ≈ −5.4); binned on the other seed's margin, the pattern vanishes."""
    values = _two_seeds(lambda mu, own: mu)
    rows = [r for a in transfer.ASSIGNMENTS for r in transfer.quartile_rows(values, 1, 0.95, assignment=a)]
    assert _q4_minus_q1(rows, "own_margin") < -4.0
    assert abs(_q4_minus_q1(rows, "other_seed")) < 0.6
    assert {r["assignment"] for r in rows} == {"own_margin", "other_seed"}


def test_other_seed_quartiles_keep_a_real_concentration():
    """Stage 2 takes back half of each pair's learnability (later = own − mu/2): the best-learned pairs
    really lose most, and both assignments show it."""
    values = _two_seeds(lambda mu, own: own - mu / 2)
    rows = [r for a in transfer.ASSIGNMENTS for r in transfer.quartile_rows(values, 1, 0.95, assignment=a)]
    assert _q4_minus_q1(rows, "own_margin") < -0.5
    assert _q4_minus_q1(rows, "other_seed") < -0.5
    correlation = {r["assignment"]: r["binning_correlation"] for r in rows}
    assert (
        correlation["own_margin"] == pytest.approx(1.0) and 0.05 < correlation["other_seed"] < 0.4
    )  # var 1 vs 4: ~0.2
    with pytest.raises(ValueError, match="at least 2 seeds"):
        transfer.quartile_rows(values[:1], 1, 0.95, assignment="other_seed")


def _scores(a_stage2: np.ndarray) -> pd.DataFrame:
    """PAIR_SCORES rows of one run (order a-b): objective a is trained at stage 1 (margin 2 each pair)
    and has ``a_stage2`` after stage 2; b is trained at stage 2."""
    n = len(a_stage2)
    rows = []
    for objective, per_stage in (
        ("a", [np.zeros(n), np.full(n, 2.0), a_stage2]),
        ("b", [np.zeros(n), np.zeros(n), np.full(n, 2.0)]),
    ):
        for stage, margin in enumerate(per_stage):
            rows.append(
                pd.DataFrame(
                    {
                        "setting": "s",
                        "method": "dpo",
                        "order": "a-b",
                        "seed": 0,
                        "stage": stage,
                        "trained_objective": None if stage == 0 else "ab"[stage - 1],
                        "objective": objective,
                        "pair_id": [f"{objective}{i}" for i in range(n)],
                        "logp_chosen": -10.0,
                        "logp_rejected": -11.0,
                        "ref_logp_chosen": -10.0,
                        "ref_logp_rejected": -11.0,
                        "n_tokens_chosen": 5,
                        "n_tokens_rejected": 5,
                        "truncated": False,
                        "beta": 0.1,
                        "reward_margin": margin,
                        "dpo_margin": 0.1 * margin,
                        "ln_margin": 0.2,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)[tables.PAIR_SCORES.names]


def _seeded(per_seed: list[np.ndarray]) -> pd.DataFrame:
    """:func:`_scores` of several seeds, seed s with ``per_seed[s]`` as a's stage-2 margins."""
    return pd.concat([_scores(a).assign(seed=s) for s, a in enumerate(per_seed)], ignore_index=True)


def test_redistribution_when_the_mean_holds_but_pairs_move_both_ways():
    """Half the pairs rise by 1.5, half fall by 1.5, in both seeds (a pair effect the runs repeat), with
    the runs' own noise of 0.1 on top: the mean holds, the pairs move beyond the noise: redistribution."""
    n = 400
    rng = np.random.default_rng(0)
    swings = np.where(np.arange(n) % 2 == 0, 1.5, -1.5)
    options = LabelOptions(n_boot=300, min_effect=0.25, pair_move=0.5, redistribution_share=0.2)
    frames = aggregate.summarise(_seeded([2.0 + swings + rng.normal(0, 0.1, n) for _ in range(2)]), options)
    row = frames["summary"].set_index(["objective", "stage"]).loc[("a", 2)]
    assert abs(row["reward_margin_change"]) < 0.02
    assert row["share_up"] == pytest.approx(0.5, abs=0.02) and row["share_down"] == pytest.approx(0.5, abs=0.02)
    assert row["pair_effect_p"] < 1e-6
    assert row["label"] == "redistribution"


def test_no_redistribution_from_the_runs_own_noise():
    """Pairs that move by ±1.5 at random in each seed, independently (training noise, no pair effect), are
    not redistribution, though a fixed 0.5-nat rule would count 80% of them moving; and one seed cannot
    tell a pair effect from noise at all, so it never says redistribution."""
    n = 400
    rng = np.random.default_rng(1)
    options = LabelOptions(n_boot=300, min_effect=0.25, pair_move=0.5, redistribution_share=0.2)
    noisy = [2.0 + rng.choice([-1.5, 1.5], n) for _ in range(3)]
    row = aggregate.summarise(_seeded(noisy), options)["summary"].set_index(["objective", "stage"]).loc[("a", 2)]
    assert row["label"] == "stable" and row["share_up"] < 0.05 and row["share_down"] < 0.05
    single = aggregate.summarise(_scores(noisy[0]), options)["summary"].set_index(["objective", "stage"]).loc[("a", 2)]
    assert single["label"] == "stable" and np.isnan(single["share_up"])
    steady = aggregate.summarise(_scores(np.full(n, 2.0)), options)["summary"].set_index(["objective", "stage"])
    assert steady.loc[("a", 2), "label"] == "stable"


def test_summarise_writes_transfer_and_quartiles_for_every_objective():
    n = 40
    frames = aggregate.summarise(_scores(np.full(n, 0.5)), LabelOptions(n_boot=200))
    transfer_table = frames["transfer"].set_index(["objective", "metric"])
    assert transfer_table.loc[("a", "reward_margin"), "bwt"] == pytest.approx(0.5 - 2.0)
    assert transfer_table.loc[("b", "reward_margin"), "fwt"] == pytest.approx(0.0)
    assert transfer_table.loc[("a", "reward_margin"), "own_stage"] == 1
    quartiles = frames["quartiles"]
    assert set(quartiles["objective"]) == {"a"}  # b is trained last: no later stage
    assert quartiles["n"].sum() == n and (quartiles["share_fell"] == 1.0).all()
    assert list(frames["transfer"].columns) == tables.TRANSFER.names
    assert list(quartiles.columns) == tables.QUARTILES.names
