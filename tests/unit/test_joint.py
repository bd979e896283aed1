"""The joint methods' pieces that need no model: ALRIGHT's draws, MAXRIGHT's pick, the batch sampler,
the collator, the weights, f* from a score file, and the step budget."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from seqpref import joint, methods, metrics, plan, train
from seqpref.methods import alright, maxright, mix
from seqpref.methods.weights import normalised_weights


def test_alright_draws_follow_the_configured_probabilities():
    weights = normalised_weights(["a", "b", "c"], {"a": 1.0, "b": 3.0, "c": 6.0})
    assert weights == pytest.approx([0.1, 0.3, 0.6])
    draws = alright.alright_draws(weights, 20_000, seed=7)
    frequencies = np.bincount(draws, minlength=3) / len(draws)
    # binomial SD at n = 20000 is ≤ 0.0035: 0.015 is > 4 SD
    assert frequencies == pytest.approx(weights, abs=0.015)
    assert (alright.alright_draws(weights, 200, seed=7) == draws[:200]).all()  # seeded
    assert not (alright.alright_draws(weights, 200, seed=8) == draws[:200]).all()


def test_alright_plan_gives_each_step_one_objective_and_mix_all():
    weights = np.array([0.25, 0.75])
    alright = methods.get("alright").plan(2, 400, weights, seed=1)
    assert len(alright) == 400 and all(len(step) == 1 for step in alright)
    share = np.mean([step[0] == 1 for step in alright])
    assert 0.68 < share < 0.82
    assert methods.get("mix").plan(2, 3, weights, seed=1) == [[0, 1]] * 3
    assert methods.get("maxright").plan(2, 3, weights, seed=1) == [[0, 1]] * 3


def test_maxright_picks_the_larger_weighted_gap_not_the_larger_loss():
    losses, optimum = np.array([0.5, 0.9]), np.array([0.1, 0.8])
    gaps = maxright.weighted_gaps(losses, optimum, np.array([0.5, 0.5]))
    assert gaps == pytest.approx([0.2, 0.05])
    assert maxright.maxright_pick(gaps) == 0  # objective 1 has the larger loss but is nearer its optimum
    gaps = maxright.weighted_gaps(losses, optimum, np.array([0.1, 0.9]))
    assert gaps == pytest.approx([0.04, 0.09])
    assert maxright.maxright_pick(gaps) == 1  # the weights turn it round
    assert maxright.maxright_pick(np.array([0.3, 0.3])) == 0  # tie: the first


def test_mix_loss_is_the_weighted_sum():
    losses = [torch.tensor(2.0, requires_grad=True), torch.tensor(4.0, requires_grad=True)]
    total = mix.mix_loss(losses, np.array([0.25, 0.75]))
    assert total.item() == pytest.approx(3.5)
    total.backward()
    assert [loss.grad.item() for loss in losses] == pytest.approx([0.25, 0.75])


def test_weights_default_to_one_and_must_be_positive():
    assert normalised_weights(["a", "b"], {"x": 2.0, "b": 3.0}) == pytest.approx([0.25, 0.75])  # x: another setting's
    assert normalised_weights(["a", "b"], {}) == pytest.approx([0.5, 0.5])
    for name in ("mix", "alright", "maxright"):
        with pytest.raises(ValueError, match=f"{name}.weights must be > 0"):
            methods.options(name, weights={"a": 0.0})
    with pytest.raises(ValueError, match="unknown method 'dop'; expected one of dpo, spo"):
        methods.options("dop")


def test_sampler_batches_follow_the_plan_and_only_used_streams_advance():
    sizes, batch = [10, 6], 4
    plan_ = [[0], [1], [0, 1], [0]]
    sampler = joint.JointBatchSampler(sizes, batch, plan_, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    for step, indices in zip(plan_, batches):
        assert len(indices) == batch * len(step)
        for k, o in enumerate(step):
            part = indices[k * batch : (k + 1) * batch]
            assert all(sampler.offsets[o] <= i < sampler.offsets[o] + sizes[o] for i in part)
    # objective 0 drew 12 rows over 3 steps: its first pass of 10 rows has no repeats
    zeros = batches[0] + batches[2][:4] + batches[3]
    assert len(set(zeros[:10])) == 10
    # objective 1 only advanced on the steps that used it: 8 rows, the first 6 a full permutation
    ones = batches[1] + batches[2][4:]
    assert sorted(ones[:6]) == list(range(10, 16))
    assert list(sampler) == batches  # re-iterating gives the same batches (seeded)
    accumulated = joint.JointBatchSampler(sizes, batch, plan_, seed=3, accumulation=2)
    assert len(accumulated) == 8 and [len(b) for b in accumulated] == [4, 4, 4, 4, 8, 8, 4, 4]


def test_collator_splits_by_objective():
    seen = []

    def collate(rows):
        seen.append(rows)
        return {"n": len(rows)}

    examples = [{"objective": 0, "x": 1}, {"objective": 0, "x": 2}, {"objective": 1, "x": 3}]
    out = joint.JointCollator(collate)(examples)
    assert out == {"parts": {0: {"n": 2}, 1: {"n": 1}}}
    assert seen[1] == [{"x": 3}]  # the objective column is not handed to TRL's collator


def test_dpo_eval_loss_is_the_mean_logistic_loss_of_the_scored_dpo_margin():
    """f* reads the score file's dpo_margin (β·reward_margin, β as scored), not a β given again."""
    scores = pd.DataFrame(
        {"objective": ["a", "a", "b"], "reward_margin": [0.0, 10.0, -3.0], "dpo_margin": [0.0, 1.0, -0.3]}
    )
    expected = np.mean([math.log(2.0), math.log1p(math.exp(-1.0))])
    assert metrics.dpo_eval_loss(scores, "a") == pytest.approx(expected)
    with pytest.raises(ValueError, match="no pairs of objective 'c'"):
        metrics.dpo_eval_loss(scores, "c")


def test_dpo_loss_is_minus_log_sigmoid_for_arrays_and_tensors_alike():
    margins = np.array([-800.0, -2.0, 0.0, 3.0, 800.0])
    expected = [800.0, math.log1p(math.exp(2.0)), math.log(2.0), math.log1p(math.exp(-3.0)), 0.0]
    assert metrics.dpo_loss(margins) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    tensor = torch.tensor(margins, requires_grad=True)
    loss = metrics.dpo_loss(tensor)
    assert loss.detach().numpy() == pytest.approx(expected, rel=1e-12, abs=1e-300)
    loss.sum().backward()  # d/dz −log σ(z) = −σ(−z)
    assert tensor.grad.numpy() == pytest.approx(-1 / (1 + np.exp(margins)), abs=1e-12)


@pytest.mark.parametrize(
    "n, batch, accumulation, epochs, steps",
    [(256, 16, 1, 1.0, 16), (250, 16, 1, 1.0, 16), (256, 16, 3, 1.0, 6), (256, 16, 1, 1.5, 24), (5, 16, 4, 1.0, 1)],
)
def test_stage_steps_are_the_trainers(n, batch, accumulation, epochs, steps):
    assert train.stage_steps(n, batch, accumulation, epochs) == steps


def test_plan_gives_joint_methods_one_order_and_joint_roles():
    config = {"settings": {"s": {"objectives": {"a": {}, "b": {}}}}, "methods": ["dpo", "mix"], "seeds": [0, 1]}
    runs = plan.runs(config)
    assert [(r["method"], r["order"]) for r in runs if r["seed"] == 0] == [
        ("dpo", "a-b"),
        ("dpo", "b-a"),
        ("mix", "a-b"),
    ]
    assert plan.trained_at("mix", "a-b", 2) == plan.JOINT and plan.trained_at("dpo", "a-b", 2) == "b"
    assert plan.trained_at("mix", "a-b", 0) is None
    assert plan.role("b", "a-b", 1, "mix") == "joint" and plan.role("b", "a-b", 0, "mix") == "base"
    assert plan.own_stage("b", "a-b", "mix") == 1 and plan.own_stage("b", "a-b", "dpo") == 2
    assert plan.optimum_order(config, "s", "b") == "b-a"
    config["settings"]["s"]["orders"] = [["a", "b"]]
    assert plan.optimum_order(config, "s", "b") == "b-a"  # not listed: built from the objectives


def test_config_names_unknown_objectives_and_settings_in_method_options():
    from pathlib import Path

    import yaml

    from seqpref.config import ConfigError, check_config

    repo = Path(__file__).resolve().parents[2]
    schema = repo / "workflow/schemas/config.schema.yaml"
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    check_config(config, schema)
    config["method_options"] = {
        "mix": {"weights": {"comply": 2.0, "complyy": 1.0}},
        "maxright": {"optimum": {"conflicting": {"warm": 0.5}, "nowhere": {"comply": 0.5}}, "eval_every": 0},
    }
    with pytest.raises(ConfigError, match=r"maxright.eval_every = 0"):
        check_config(config, schema)  # the schema first
    config["method_options"]["maxright"]["eval_every"] = 5
    with pytest.raises(ConfigError) as error:
        check_config(config, schema)
    message = str(error.value)
    assert "method_options.mix.weights.complyy: no setting has objective 'complyy'" in message
    assert (
        "method_options.maxright.optimum.conflicting.warm: not an objective of 'conflicting'; expected one of comply, refuse"
        in message
    )
    assert "method_options.maxright.optimum.nowhere: unknown setting" in message
    assert "weights.comply:" not in message
