"""The method registry: the schema, the plan, the workflow and the figures read one list of methods,
and the replay baseline's batches hold the configured share of earlier pairs, seeded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from seqpref import methods, plan
from seqpref.figures import method_comparison
from seqpref.methods import merge, replay

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def test_the_schemas_method_list_and_option_blocks_are_the_registrys():
    assert SCHEMA["properties"]["methods"]["items"]["enum"] == methods.names()
    assert list(SCHEMA["properties"]["method_options"]["properties"]) == sorted(
        methods.names(), key=list(SCHEMA["properties"]["method_options"]["properties"]).index)
    assert set(SCHEMA["properties"]["method_options"]["properties"]) == set(methods.names())


def test_every_method_declares_what_its_kind_needs():
    for name, method in methods.REGISTRY.items():
        assert method.name == name
        assert method.colour.startswith("#") and len(method.colour) == 7, name
        if method.kind == methods.JOINT:
            assert method.plan is not None and method.loss is not None, name
        if method.kind == methods.POST_HOC:
            assert method.build is not None and not method.sham, name
        method.options()  # the defaults make valid options
    colours = [m.colour for m in methods.REGISTRY.values()]
    assert len(set(colours)) == len(colours), "two methods share a colour"
    assert method_comparison.METHOD_COLOURS == {n: m.colour for n, m in methods.REGISTRY.items()}


def test_kinds_decide_orders_roles_and_training():
    config = {"settings": {"s": {"objectives": {"a": {}, "b": {}}}}, "methods": methods.names(), "seeds": [0]}
    runs = Counter(run["method"] for run in plan.runs(config))
    assert runs == {"dpo": 2, "spo": 2, "replay": 2, "mix": 1, "alright": 1, "maxright": 1, "merge": 1}
    assert plan.role("a", "a-b", 2, "merge") == "earlier" and plan.role("a", "a-b", 2, "mix") == "joint"
    assert [m for m in methods.names() if not plan.trains(m)] == ["merge"]
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        plan.is_joint("ppo")


def test_setting_options_drop_other_settings_entries():
    block = {"weights": {"a": 2.0, "z": 3.0}, "eval_every": 3, "optimum": {"s": {"a": 0.5}, "t": {"z": 0.4}}}
    assert methods.get("maxright").setting_options(block, "s", ["a", "b"]) == {
        "weights": {"a": 2.0}, "eval_every": 3, "optimum": {"a": 0.5}}
    assert methods.get("replay").setting_options({"share": 0.5}, "s", ["a"]) == {"share": 0.5}


@pytest.mark.parametrize("share, batch, replayed", [(0.25, 16, 4), (0.5, 8, 4), (0.0, 16, 0), (0.99, 4, 3), (0.1, 16, 2)])
def test_replay_batches_hold_the_configured_share_of_earlier_pairs(share, batch, replayed):
    sizes = [40, 30, 20]  # the stage's own pairs, then two earlier objectives' (rows 40..89)
    sampler = replay.ReplayBatchSampler(sizes, batch, share, steps=7, seed=11, accumulation=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 14
    for indices in batches:
        assert len(indices) == batch
        assert sum(i >= 40 for i in indices) == replayed
        assert all(i < 40 for i in indices[: batch - replayed])  # own pairs first
    earlier = [i for b in batches for i in b if i >= 40]
    if replayed:
        # the pool (rows 40..89) is drawn as a permutation: no pair twice before every pair once
        first_pass = earlier[:50]
        assert len(set(first_pass)) == len(first_pass) and set(first_pass) <= set(range(40, 90))
        if len(earlier) >= 50:
            assert sorted(first_pass) == list(range(40, 90))
        assert len(earlier) >= 28 and {i < 70 for i in earlier} == {True, False}  # both earlier objectives drawn


def test_replay_is_seeded():
    def draw(seed):
        return list(replay.ReplayBatchSampler([40, 40], 16, 0.25, steps=5, seed=seed))

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    with pytest.raises(ValueError, match="at least one earlier objective"):
        replay.ReplayBatchSampler([40], 16, 0.25, steps=5, seed=0)
    with pytest.raises(ValueError, match=r"replay.share must be in \[0, 1\)"):
        replay.ReplayOptions(share=1.0)
    with pytest.raises(ValueError, match="replays no pair"):  # round(0.25 · 2) = 0: it would be plain DPO
        replay.ReplayBatchSampler([40, 40], 2, 0.25, steps=5, seed=0)


def test_merge_weights_of_stages_and_front():
    options = merge.MergeOptions(weight_sum=2.0, lambdas=[0.0, 0.25, 1.0])
    assert merge.stage_weights(options, 1) == [2.0]
    assert merge.stage_weights(options, 2) == [1.0, 1.0]
    assert merge.front_weights(options, 1) == [0.5, 1.5]
    with pytest.raises(ValueError, match="needs a density"):
        merge.MergeOptions(combination="ties_svd")
    with pytest.raises(ValueError, match="combination must be one of"):
        merge.MergeOptions(combination="average")
    assert np.isclose(sum(merge.front_weights(options, 2)), 2.0)
