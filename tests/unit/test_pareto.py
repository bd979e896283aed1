"""The Pareto table: dominance and hypervolume on hand-built points, and a setting's points from a
summary and a merge front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqpref import pareto
from seqpref.aggregate import LabelOptions


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


def _summary():
    rows = []
    for method, order, final in (("dpo", "a-b", (0.2, 1.5)), ("dpo", "b-a", (1.4, 0.1)), ("mix", "a-b", (1.0, 1.0))):
        for stage in (0, 1, 2):
            for objective, value in zip("ab", final):
                v = 0.0 if stage == 0 else value
                rows.append({"setting": "s", "method": method, "order": order, "n_seeds": 2, "stage": stage,
                             "objective": objective, "reward_margin": v, "reward_margin_lo": v - 0.1,
                             "reward_margin_hi": v + 0.1})
    return pd.DataFrame(rows)


def _front():
    rng = np.random.default_rng(0)
    rows = []
    for lam, (a, b) in ((0.0, (0.0, 1.2)), (0.5, (0.6, 0.6)), (1.0, (1.3, 0.0))):
        for seed in (0, 1):
            for objective, mean in zip("ab", (a, b)):
                for pair in range(30):
                    rows.append({"setting": "s", "method": "merge", "order": "a-b", "seed": seed, "lam": lam,
                                 "objective": objective, "pair_id": f"{objective}{pair}",
                                 "reward_margin": mean + rng.normal(0, 0.1)})
    return pd.DataFrame(rows)


def test_points_and_hypervolumes_of_a_setting():
    options = LabelOptions(n_boot=200)
    points, volumes = pareto.pareto_tables(_summary(), _front(), {"s": ["a", "b"], "three": ["a", "b", "c"]}, options)
    assert len(points) == 3 + 3 and set(points["setting"]) == {"s"}
    final = points[points["point"] == "final"].set_index(["method", "order"])
    assert final.loc[("dpo", "a-b"), ["x", "y"]].tolist() == [0.2, 1.5]
    front = points[points["method"] == "merge"].sort_values("lam")
    assert front["x"].to_numpy() == pytest.approx([0.0, 0.6, 1.3], abs=0.05)
    assert (front["x_lo"] < front["x"]).all() and (front["x"] < front["x_hi"]).all()
    # merge λ=0.5 (0.6, 0.6) is beaten by mix (1, 1); the rest are not dominated
    dominated = points.set_index(["method", "lam"])["dominated"]
    assert dominated[("merge", 0.5)] and not final["dominated"].any()
    hv = volumes.set_index("method")["hypervolume"]
    assert hv["mix"] == pytest.approx(1.0)
    assert hv["dpo"] == pytest.approx(0.2 * 1.5 + (1.4 - 0.2) * 0.1)
    assert set(volumes["setting"]) == {"s"}  # three objectives: no front, no row
