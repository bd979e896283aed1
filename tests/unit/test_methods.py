"""The method registry: the config schema, the plan, the workflow and the figures read one list of
methods, and the replay baseline's batches hold the configured share of earlier pairs, seeded."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from seqpref import methods, plan
from seqpref.config import ConfigError, check_config, schema
from seqpref.figures import common, method_comparison
from seqpref.methods import merge, replay

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "workflow/schemas/config.schema.yaml"
LAB = yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_the_schemas_method_list_and_option_blocks_are_the_registrys():
    properties = schema(SCHEMA_FILE)["properties"]
    assert properties["methods"]["items"]["enum"] == methods.names()
    blocks = properties["method_options"]["properties"]
    assert list(blocks) == methods.names()
    for name, method in methods.REGISTRY.items():
        assert set(blocks[name]["properties"]) == {f.name for f in fields(method.options)}, name
        assert blocks[name]["additionalProperties"] is False and blocks[name]["default"] == {}, name


@pytest.mark.parametrize("name", methods.names())
def test_a_method_block_takes_no_key_its_options_lack(name):
    config = {**LAB, "method_options": {name: {"no_such_option": 1}}}
    names = sorted(f.name for f in fields(methods.get(name).options))
    expected = f"expected one of {', '.join(names)}" if names else "no keys are expected here"
    with pytest.raises(ConfigError, match=rf"method_options\.{name}\.no_such_option: unknown key; {expected}"):
        check_config(config, SCHEMA_FILE)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"replay": {"share": 1.0}},
            r"method_options\.replay\.share = 1\.0: 1\.0 is greater than or equal to the maximum of 1",
        ),
        (
            {"merge": {"combination": "average"}},
            r"method_options\.merge\.combination = 'average': expected one of 'cat'",
        ),
        ({"mix": {"weights": {"comply": 0}}}, r"method_options\.mix\.weights\.comply = 0"),
        ({"spo": {"penalty": "high"}}, r"method_options\.spo\.penalty = 'high': expected type number"),
    ],
)
def test_method_options_are_checked_by_the_types_and_constraints_of_their_fields(block, message):
    with pytest.raises(ConfigError, match=message):
        check_config({**LAB, "methods": methods.names(), "method_options": block}, SCHEMA_FILE)


def test_method_options_their_dataclass_rejects_fail_the_check():
    config = {**LAB, "methods": ["dpo", "merge"], "method_options": {"merge": {"combination": "ties"}}}
    with pytest.raises(ConfigError, match=r"method_options\.merge: merge\.combination ties needs a density"):
        check_config(config, SCHEMA_FILE)
    config["method_options"]["merge"]["density"] = 0.5
    check_config(config, SCHEMA_FILE)


def test_a_figure_naming_a_method_the_study_does_not_run_fails_the_check():
    config = {**LAB, "methods": ["spo", "mix"]}
    with pytest.raises(ConfigError) as error:
        check_config(config, SCHEMA_FILE)
    named = [figure for figure, options in LAB["figures"].items() if (options or {}).get("method") == "dpo"]
    assert named
    for figure in named:
        assert (
            f"figures.{figure}.method = 'dpo': not a method of this study; expected one of spo, mix (methods)"
            in str(error.value)
        )
    config["figures"] = {
        figure: {k: v for k, v in (options or {}).items() if k != "method"}
        for figure, options in LAB["figures"].items()
    }
    filled = check_config(config, SCHEMA_FILE)
    assert not [f for f, options in filled["figures"].items() if options.get("method")]  # each draws its default


def test_a_figure_draws_the_first_sequential_method_of_its_table_by_default():
    sequential, joint = methods.names(methods.SEQUENTIAL), methods.names(methods.JOINT)

    def frame(names):
        return pd.DataFrame({"method": names})

    assert common.default_method(frame([joint[0], *sequential[::-1]])) == sequential[0]
    assert common.default_method(frame(joint[::-1])) == joint[0]
    rows, method = common.select_method(frame([joint[0], sequential[-1]]), None, "t")
    assert method == sequential[-1] and list(rows["method"]) == [method]
    with pytest.raises(ValueError, match=r"t: no rows with method 'dpo'; methods present: \['mix'\]"):
        common.select_method(frame(["mix"]), "dpo", "t")


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
    objectives = ["a", "b"]
    config = {
        "settings": {"s": {"objectives": dict.fromkeys(objectives, {})}},
        "methods": methods.names(),
        "seeds": [0],
    }
    runs = Counter(run["method"] for run in plan.runs(config))
    every_order = len(list(permutations(objectives)))  # sequential: every order; joint and post hoc: the config's
    assert runs == {name: every_order if m.kind == methods.SEQUENTIAL else 1 for name, m in methods.REGISTRY.items()}
    assert plan.role("a", "a-b", 2, "merge") == "earlier" and plan.role("a", "a-b", 2, "mix") == "joint"
    assert [m for m in methods.names() if not plan.trains(m)] == ["merge"]
    with pytest.raises(ValueError, match="unknown method 'ppo'"):
        plan.is_joint("ppo")


def test_setting_options_drop_other_settings_entries():
    block = {"weights": {"a": 2.0, "z": 3.0}, "eval_every": 3, "optimum": {"s": {"a": 0.5}, "t": {"z": 0.4}}}
    assert methods.get("maxright").setting_options(block, "s", ["a", "b"]) == {
        "weights": {"a": 2.0},
        "eval_every": 3,
        "optimum": {"a": 0.5},
    }
    assert methods.get("replay").setting_options({"share": 0.5}, "s", ["a"]) == {"share": 0.5}


@pytest.mark.parametrize(
    "share, batch, replayed", [(0.25, 16, 4), (0.5, 8, 4), (0.0, 16, 0), (0.99, 4, 3), (0.1, 16, 2)]
)
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
