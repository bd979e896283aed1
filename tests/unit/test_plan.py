"""seqpref.plan: orders, stages, roles and the run grid."""

from __future__ import annotations

import pytest

from seqpref import plan


def _config(**overrides) -> dict:
    config = {
        "settings": {
            "conflicting": {"objectives": {"comply": {}, "refuse": {}}},
            "independent": {"objectives": {"comply": {}, "warm": {}}},
        },
        "methods": ["dpo"],
        "seeds": [0, 1],
    }
    config.update(overrides)
    return config


def test_objectives_in_config_order():
    assert plan.objectives(_config(), "conflicting") == ["comply", "refuse"]
    assert plan.objectives(_config(), "independent") == ["comply", "warm"]


def test_orders_all_gives_both_permutations():
    config = _config()
    assert plan.orders(config, "conflicting") == ["comply-refuse", "refuse-comply"]
    config["settings"]["conflicting"]["orders"] = "all"
    assert plan.orders(config, "conflicting") == ["comply-refuse", "refuse-comply"]


def test_orders_all_with_three_objectives():
    config = {"settings": {"s": {"objectives": {"a": {}, "b": {}, "c": {}}}}}
    got = plan.orders(config, "s")
    assert sorted(got) == sorted(["a-b-c", "a-c-b", "b-a-c", "b-c-a", "c-a-b", "c-b-a"])
    assert len(set(got)) == 6


def test_listed_orders_are_joined():
    config = _config()
    config["settings"]["conflicting"]["orders"] = [["refuse", "comply"]]
    assert plan.orders(config, "conflicting") == ["refuse-comply"]


@pytest.mark.parametrize(
    "bad",
    [["comply"], ["comply", "comply"], ["comply", "warm"], ["comply", "refuse", "refuse"]],
)
def test_listed_order_not_a_permutation_raises_naming_the_setting(bad):
    config = _config()
    config["settings"]["conflicting"]["orders"] = [["comply", "refuse"], bad]
    with pytest.raises(ValueError, match="conflicting"):
        plan.orders(config, "conflicting")


def test_stage_objective():
    assert plan.stage_objectives("a-b-c") == ["a", "b", "c"]
    assert plan.stage_objective("a-b", 1) == "a"
    assert plan.stage_objective("a-b", 2) == "b"
    assert plan.stage_objective("refuse-comply", 1) == "refuse"
    for stage in (0, 3, -1):
        with pytest.raises(ValueError):
            plan.stage_objective("a-b", stage)


def test_n_stages():
    assert plan.n_stages("a") == 1
    assert plan.n_stages("a-b") == 2
    assert plan.n_stages("a-b-c") == 3


@pytest.mark.parametrize(
    ("objective", "order", "stage", "expected"),
    [
        ("a", "a-b", 0, "base"),
        ("b", "a-b", 0, "base"),
        ("a", "a-b", 1, "trained"),
        ("b", "a-b", 1, "later"),
        ("a", "a-b", 2, "earlier"),
        ("b", "a-b", 2, "trained"),
        ("a", "b-a", 1, "later"),
        ("a", "b-a", 2, "trained"),
        ("b", "b-a", 2, "earlier"),
        ("c", "a-b-c", 2, "later"),
        ("a", "a-b-c", 3, "earlier"),
    ],
)
def test_role(objective, order, stage, expected):
    assert plan.role(objective, order, stage, "dpo") == expected


def test_runs_count_and_order():
    runs = plan.runs(_config())
    # 2 settings × 1 method × 2 orders × 2 seeds
    assert len(runs) == 8
    expected = [
        {"setting": setting, "method": "dpo", "order": order, "seed": seed}
        for setting, orders in (
            ("conflicting", ["comply-refuse", "refuse-comply"]),
            ("independent", ["comply-warm", "warm-comply"]),
        )
        for order in orders
        for seed in (0, 1)
    ]
    assert runs == expected
    assert all(type(r["seed"]) is int for r in runs)
    assert len({plan.run_dir(r) for r in runs}) == 8


def test_runs_respect_listed_orders():
    config = _config()
    config["settings"]["independent"]["orders"] = [["warm", "comply"]]
    runs = plan.runs(config)
    assert len(runs) == 6
    assert [r["order"] for r in runs if r["setting"] == "independent"] == ["warm-comply", "warm-comply"]


def test_run_dir():
    run = {"setting": "conflicting", "method": "dpo", "order": "comply-refuse", "seed": 3}
    assert plan.run_dir(run) == "conflicting/dpo/comply-refuse/seed3"
