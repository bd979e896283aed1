"""The Pareto table: dominance and hypervolume on hand-built points, and a setting's points from a
summary and a merge front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqpref import pareto
from seqpref.options import LabelOptions


def test_dominance_on_a_hand_built_set():
    #            A       B       C (dominated by A)  D (equal to B)  E (loses on y to all, best x)
    x = np.array([2.0, 1.0, 1.5, 1.0, 3.0])
    y = np.array([2.0, 3.0, 1.0, 3.0, -1.0])
    assert pareto.dominated(x, y).tolist() == [False, False, True, False, False]


def test_hypervolume_on_a_hand_built_set():
    # the union of [0,2]x[0,2] and [0,1]x[0,3]: 4 + 1·1 = 5; C inside adds nothing; E (y < 0) adds nothing
    x, y = [2.0, 1.0, 1.5, 3.0], [2.0, 3.0, 1.0, -1.0]
    assert pareto.hypervolume(x, y, (0.0, 0.0)) == pytest.approx(5.0)
    assert pareto.hypervolume(x, y, (1.0, 1.0)) == pytest.approx(1.0)  # only A's [1,2]x[1,2]
    assert pareto.hypervolume([-1.0], [5.0], (0.0, 0.0)) == 0.0
    assert pareto.hypervolume([], [], (0.0, 0.0)) == 0.0


def _centred(values: np.ndarray) -> np.ndarray:
    return values - values.mean()


def _pair_scores(
    points: dict, n_pairs: int = 40, seeds=(0, 1), noise: float = 0.1, seed: int = 0, seed_spread: float = 0.0
) -> pd.DataFrame:
    """PAIR_SCORES-like rows: stages 0..2 of each (method, order) in ``points`` whose stages 1 and 2 have
    exactly the given (a, b) means over seeds, the base 0; pairs ``a0..``/``b0..`` with a per-pair effect
    shared by every run, per-seed pair noise of sd ``noise`` and per-seed offsets of sd ``seed_spread``."""
    rng = np.random.default_rng(seed)
    pair_effect = {o: _centred(rng.normal(0, 0.3, n_pairs)) for o in "ab"}
    rows = []
    for (method, order), final in points.items():
        offsets = {o: _centred(rng.normal(0, seed_spread, len(seeds))) for o in "ab"}
        for i, s in enumerate(seeds):
            for stage in (0, 1, 2):
                for objective, value in zip("ab", final):
                    margins = (
                        np.zeros(n_pairs)
                        if stage == 0
                        else value
                        + pair_effect[objective]
                        + offsets[objective][i]
                        + _centred(rng.normal(0, noise, n_pairs))
                    )
                    rows += [
                        {
                            "setting": "s",
                            "method": method,
                            "order": order,
                            "seed": s,
                            "stage": stage,
                            "objective": objective,
                            "pair_id": f"{objective}{p}",
                            "reward_margin": margins[p],
                        }
                        for p in range(n_pairs)
                    ]
    return pd.DataFrame(rows)


RUNS = {("dpo", "a-b"): (0.2, 1.5), ("dpo", "b-a"): (1.4, 0.1), ("mix", "a-b"): (1.0, 1.0)}


def _front():
    rng = np.random.default_rng(0)
    rows = []
    for lam, (a, b) in ((0.0, (0.0, 1.2)), (0.5, (0.6, 0.6)), (1.0, (1.3, 0.0))):
        for seed in (0, 1):
            for objective, mean in zip("ab", (a, b)):
                for pair in range(40):
                    rows.append(
                        {
                            "setting": "s",
                            "method": "merge",
                            "order": "a-b",
                            "seed": seed,
                            "lam": lam,
                            "objective": objective,
                            "pair_id": f"{objective}{pair}",
                            "reward_margin": mean + rng.normal(0, 0.1),
                        }
                    )
    return pd.DataFrame(rows)


def test_points_and_hypervolumes_of_a_setting():
    options = LabelOptions(n_boot=200)
    points, volumes = pareto.pareto_tables(
        _pair_scores(RUNS), _front(), {"s": ["a", "b"], "three": ["a", "b", "c"]}, options
    )
    assert len(points) == 3 + 3 and set(points["setting"]) == {"s"}
    final = points[points["point"] == "final"].set_index(["method", "order"])
    assert final.loc[("dpo", "a-b"), ["x", "y"]].tolist() == pytest.approx([0.2, 1.5])
    front = points[points["method"] == "merge"].sort_values("lam")
    assert front["x"].to_numpy() == pytest.approx([0.0, 0.6, 1.3], abs=0.05)
    assert (front["x_lo"] < front["x"]).all() and (front["x"] < front["x_hi"]).all()
    # merge λ=0.5 (0.6, 0.6) is beaten by mix (1, 1) far beyond the noise; the rest are not dominated
    dominated = points.set_index(["method", "lam"])["dominated"]
    assert dominated[("merge", 0.5)] and not final["dominated"].any()
    hv = volumes.set_index("method")
    assert hv.loc["mix", "hypervolume"] == pytest.approx(1.0)
    assert hv.loc["dpo", "hypervolume"] == pytest.approx(0.2 * 1.5 + (1.4 - 0.2) * 0.1)
    assert hv.loc["dpo", "best_point_hypervolume"] == pytest.approx(0.3)  # one run: 0.2 x 1.5 beats 1.4 x 0.1
    assert (hv["hypervolume_lo"] < hv["hypervolume"]).all() and (hv["hypervolume"] < hv["hypervolume_hi"]).all()
    assert set(volumes["setting"]) == {"s"}  # three objectives: no front, no row


def test_a_point_within_the_noise_is_not_dominated_by_intervals():
    # B beats A by 0.02 nats on both objectives, far inside a seed-to-seed spread of 0.5: dominated on the
    # means, not shown; the same gap with no spread is shown
    runs = {("dpo", "a-b"): (1.0, 1.0), ("mix", "a-b"): (1.02, 1.02)}
    points, _ = pareto.pareto_tables(
        _pair_scores(runs, seed_spread=0.5), None, {"s": ["a", "b"]}, LabelOptions(n_boot=100)
    )
    row = points.set_index("method").loc["dpo"]
    assert row["dominated_by_means"] and not row["dominated"]
    points, _ = pareto.pareto_tables(_pair_scores(runs, noise=0.01), None, {"s": ["a", "b"]}, LabelOptions(n_boot=100))
    assert points.set_index("method").loc["dpo", "dominated"]


def test_final_points_carry_their_runs_budget():
    training = pd.DataFrame(
        [
            {
                "setting": "s",
                "method": m,
                "order": o,
                "seed": s,
                "stage": k,
                "objective": "a",
                "step": 4,
                "metric": metric,
                "value": value * k,
            }
            for (m, o) in RUNS
            for s in (0, 1)
            for k in (1, 2)
            for metric, value in (("budget/pairs", 64), ("budget/tokens", 1000), ("budget/optimizer_steps", 4))
        ]
    )
    points, _ = pareto.pareto_tables(_pair_scores(RUNS), None, {"s": ["a", "b"]}, LabelOptions(n_boot=100), training)
    # through stage 2: stage 1's plus stage 2's (x2)
    assert points["pairs_seen_total"].tolist() == [64 * 3] * 3
    assert points["optimizer_steps_total"].tolist() == [12] * 3


def test_hypervolume_interval_covers_pairs_only_with_one_seed():
    rng = np.random.default_rng(1)
    x, y = rng.normal(1.0, 0.5, (1, 50)), rng.normal(2.0, 0.5, (1, 50))
    one = pareto.hypervolume_interval([x], [y], (0.0, 0.0), 0.95, 300, 0)
    assert one["covers"] == "pairs (1 seed)" and one["lo"] < x.mean() * y.mean() < one["hi"]


def test_points_with_other_seeds_are_an_error_not_a_wrong_pairing():
    scores = _pair_scores(RUNS)
    scores = scores[~((scores["method"] == "mix") & (scores["seed"] == 1))]  # mix ran one seed only
    with pytest.raises(ValueError, match="mix/a-b final: seeds \\[0\\].*same seeds"):
        pareto.pareto_tables(scores, None, {"s": ["a", "b"]}, LabelOptions(n_boot=100))
