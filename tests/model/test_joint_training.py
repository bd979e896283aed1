"""Joint methods on a tiny model: mix's loss against hand-written DPO losses, and whole joint stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from dpo_by_hand import BETA, MAX_LENGTH, manual_dpo_loss

from seqpref import base_model, dpo_trainer, joint, lab, logps, methods, tables, train
from seqpref.lora import adapter_state
from seqpref.methods import alright
from seqpref.options import LoraOptions, TrainOptions

RUN = {"setting": "lab", "order": "comply-warm", "seed": 0, "objective": "joint"}
OPTIONS = dict(beta=BETA, learning_rate=3e-3, batch_size=8, max_length=64, lora={"r": 4, "alpha": 8})


def _objective(tiny_base, prefer, n, seed, prefix):
    model, tokenizer = base_model.load_base(tiny_base)
    pairs = lab.make_pairs(lab.LabObjective(prefer=prefer), n, seed=seed, id_prefix=prefix)
    return pairs, logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 8)


def test_mix_loss_equals_weighted_sum_of_separate_dpo_losses(tiny_base, tmp_path):
    from datasets import concatenate_datasets
    from trl import DPOConfig

    model, tokenizer = base_model.load_base(tiny_base)
    data = [
        _objective(tiny_base, {"opener": "comply"}, 8, 3, "c"),
        _objective(tiny_base, {"closer": "warm"}, 8, 4, "w"),
    ]
    frames = [dpo_trainer.training_dataset(pairs, ref, tokenizer) for pairs, ref in data]
    dataset = concatenate_datasets([f.add_column("objective", [o] * len(f)) for o, f in enumerate(frames)])
    weights = np.array([0.25, 0.75])
    sampler = joint.JointBatchSampler([8, 8], 4, [[0, 1]], seed=0)
    config = DPOConfig(
        output_dir=str(tmp_path),
        beta=BETA,
        max_length=MAX_LENGTH,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
    )
    trainer = joint.joint_trainer_class()(
        joint=joint.JointPlan(methods.get("mix"), ["comply", "warm"], weights, sampler),
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraOptions(r=4, alpha=8).peft_config(),
    )
    peft_model = trainer.model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:  # B starts at 0: move the adapter so the losses differ from log 2
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    peft_model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    (indices,) = list(sampler)
    mixed = trainer.compute_loss(peft_model, batch)

    separate = []
    for o, (pairs, ref) in enumerate(data):
        rows = [i - 8 * o for i in indices[4 * o : 4 * (o + 1)]]
        ref_rows = ref.set_index("pair_id").loc[pairs["pair_id"].iloc[rows]].reset_index()
        separate.append(manual_dpo_loss(peft_model, tokenizer, pairs.iloc[rows], ref_rows))
    expected = 0.25 * separate[0] + 0.75 * separate[1]
    assert abs(separate[0].item() - separate[1].item()) > 1e-3  # the weights matter
    assert mixed.item() == pytest.approx(expected.item(), abs=1e-4)
    logged = trainer.pending_metrics()
    assert "comply::rewards/margins" in logged and "warm::rewards/margins" in logged
    assert "rewards/margins" not in logged  # every TRL metric is filed under its objective


@pytest.fixture(scope="module")
def two_objectives(tiny_base, pair_files, tmp_path_factory):
    """Train pair files of two objectives: comply (the shared fixture, 48 pairs) and warm (24 pairs)."""
    out = tmp_path_factory.mktemp("warm")
    pairs, ref = _objective(tiny_base, {"closer": "warm"}, 24, 5, "w")
    tables.write_table(pairs, out / "pairs.parquet", tables.PAIRS, {"test": True})
    tables.write_table(ref, out / "base_logps.parquet", tables.LOGPS, {"test": True})
    return [
        ("comply", pair_files["pairs"], pair_files["base_logps"]),
        ("warm", str(out / "pairs.parquet"), str(out / "base_logps.parquet")),
    ]


def _budget(log_path) -> dict:
    """The ``budget/*`` values of a stage's training log."""
    log = pd.read_parquet(log_path)
    rows = log[log["metric"].str.startswith("budget/")]
    return dict(zip(rows["metric"], rows["value"]))


def test_mix_at_equal_pairs_sees_a_sequential_steps_pairs(tiny_base, two_objectives, tmp_path):
    options = TrainOptions(**OPTIONS)
    spent = {}
    for equal in (False, True):
        settings = methods.options("mix", equal_pairs=equal)
        joint.train_joint_stage(
            tiny_base,
            two_objectives,
            1,
            str(tmp_path / f"e{equal}"),
            str(tmp_path / f"e{equal}.parquet"),
            options,
            settings,
            {**RUN, "method": "mix", "stage": 1},
        )
        spent[equal] = _budget(tmp_path / f"e{equal}.parquet")
    steps = train.stage_steps(48, OPTIONS["batch_size"])
    assert spent[False]["budget/optimizer_steps"] == spent[True]["budget/optimizer_steps"] == steps
    assert spent[False]["budget/pairs"] == 2 * OPTIONS["batch_size"] * steps  # a full batch of each objective
    assert spent[True]["budget/pairs"] == OPTIONS["batch_size"] * steps  # half a batch of each: a sequential step's
    with pytest.raises(ValueError, match="does not divide"):
        joint.train_joint_stage(
            tiny_base,
            [*two_objectives, ("third", *two_objectives[0][1:])],
            1,
            str(tmp_path / "odd"),
            str(tmp_path / "odd.parquet"),
            options,
            methods.options("mix", equal_pairs=True),
            {**RUN, "method": "mix", "stage": 1},
        )


@pytest.mark.parametrize("method", ["mix", "alright", "maxright"])
def test_joint_stages_take_the_sequential_budget(method, tiny_base, two_objectives, tmp_path):
    options = TrainOptions(**OPTIONS)
    settings = methods.options(
        method,
        weights={"warm": 3.0},
        **({"eval_every": 2, "optimum": {"comply": 0.60, "warm": 0.65}} if method == "maxright" else {}),
    )
    previous = None
    for stage, budget in ((1, 6), (2, 3)):  # ceil(48/8) steps, then ceil(24/8): the k-th objective's
        run = {**RUN, "method": method, "stage": stage}
        summary = joint.train_joint_stage(
            tiny_base,
            two_objectives,
            stage,
            str(tmp_path / f"stage{stage}"),
            str(tmp_path / f"log{stage}.parquet"),
            options,
            settings,
            run,
            previous,
        )
        assert summary["steps"] == budget
        spent = _budget(tmp_path / f"log{stage}.parquet")
        # pairs whose loss was backpropagated: a batch of 8 of every objective per mix step, of one otherwise
        assert spent == {
            **spent,
            "budget/optimizer_steps": budget,
            "budget/pairs": 8 * budget * (2 if method == "mix" else 1),
        }
        if method != "maxright":  # maxright's gap refreshes also run (no-grad) forwards of the other objective
            assert spent["budget/tokens"] < spent["budget/pairs"] * 2 * MAX_LENGTH
        counts = summary["micro_batches_per_objective"]
        if method == "mix":
            assert counts == {"comply": budget, "warm": budget}
        else:
            assert sum(counts.values()) == budget
        if method == "alright":
            draws = alright.alright_draws(np.array([0.25, 0.75]), budget, seed=stage)
            assert [counts["comply"], counts["warm"]] == np.bincount(draws, minlength=2).tolist()
        previous = str(tmp_path / f"stage{stage}")
    assert summary["tensors_loaded_from_previous"] > 0
    log = pd.read_parquet(tmp_path / "log2.parquet")
    assert set(log["objective"]) == {"joint", "comply", "warm"}
    assert set(log.loc[log["objective"] == "joint", "metric"]) >= {"loss", "learning_rate"}
    stepped = log[log["metric"] == "joint/stepped"].groupby("objective")["value"].sum().to_dict()
    assert stepped == {k: float(v) for k, v in counts.items()}
    if method == "maxright":
        assert {"joint/gap"} <= set(log["metric"])


def test_maxright_without_an_optimum_names_the_objective(tiny_base, two_objectives, tmp_path):
    options = TrainOptions(**OPTIONS)
    settings = methods.options("maxright", optimum={"comply": 0.6})
    with pytest.raises(ValueError, match=r"maxright needs f\* of \['warm'\]"):
        joint.train_joint_stage(
            tiny_base,
            two_objectives,
            1,
            str(tmp_path / "s1"),
            str(tmp_path / "l.parquet"),
            options,
            settings,
            {**RUN, "method": "maxright", "stage": 1},
        )


def test_sequential_stage_takes_stage_steps(two_stages_for_movement):
    log = pd.read_parquet(two_stages_for_movement / "log1.parquet")
    assert log["step"].max() == train.stage_steps(48, 16)


def _sequential_trainer(tiny_base, pair_files, tmp_path, dropout):
    model, tokenizer = base_model.load_base(tiny_base)
    options = TrainOptions(**{**OPTIONS, "lora": {"r": 4, "alpha": 8, "dropout": dropout}})
    dataset = dpo_trainer.training_dataset(
        pd.read_parquet(pair_files["pairs"]), pd.read_parquet(pair_files["base_logps"]), tokenizer
    )
    run = {**RUN, "method": "dpo", "stage": 1, "objective": "comply"}
    return dpo_trainer.trainer_class()(
        model=model,
        args=dpo_trainer.dpo_config(options, run, str(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
    )


def test_lora_dropout_is_active_in_training(tiny_base, pair_files, tmp_path):
    """TRL zeroes every nn.Dropout (disable_dropout=True), LoRA's too: the configured LoRA dropout
    must be what training applies, and the base model's own dropouts stay off."""
    trainer = _sequential_trainer(tiny_base, pair_files, tmp_path, dropout=0.5)
    model = trainer.model
    lora = [m for n, m in model.named_modules() if n.endswith("lora_dropout.default")]
    assert lora and all(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in lora)
    others = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "lora_dropout" not in n]
    assert all(m.p == 0 for m in others)
    with torch.no_grad():  # B starts at 0: give the adapter an output, then dropout changes it
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    model.train()
    first, second = model(input_ids=ids).logits, model(input_ids=ids).logits
    assert not torch.allclose(first, second)  # dropout is on in training
    model.eval()
    torch.testing.assert_close(model(input_ids=ids).logits, model(input_ids=ids).logits)  # and off in eval
    # dropout 0: PEFT's Identity, untouched
    assert not any(
        isinstance(m, torch.nn.Dropout)
        for n, m in _sequential_trainer(tiny_base, pair_files, tmp_path / "z", 0.0).model.named_modules()
        if "lora_dropout" in n
    )


def _joint_trainer(
    method, two_objectives_paths, tiny_base, tmp_path, batch_size, accumulation, steps, eval_every=2, records=None
):
    """A joint trainer over the two objectives, as train_joint_stage builds it, without training;
    its logs go to ``records``."""
    model, tokenizer = base_model.load_base(tiny_base)
    options = TrainOptions(
        **{**OPTIONS, "batch_size": batch_size, "gradient_accumulation_steps": accumulation, "optim": "sgd"}
    )
    frames = [
        dpo_trainer.training_dataset(pd.read_parquet(p), pd.read_parquet(b), tokenizer)
        for _, p, b in two_objectives_paths
    ]
    from datasets import concatenate_datasets

    dataset = concatenate_datasets([f.add_column("objective", [o] * len(f)) for o, f in enumerate(frames)])
    weights = np.array([0.5, 0.5])
    plan = methods.get(method).plan(2, steps, weights, seed=7)
    sampler = joint.JointBatchSampler([len(f) for f in frames], batch_size, plan, seed=7, accumulation=accumulation)
    run = {**RUN, "method": method, "stage": 1}
    options_ = methods.options(
        method,
        **({"eval_every": eval_every, "optimum": {"comply": 0.6931, "warm": 0.6931}} if method == "maxright" else {}),
    )
    registered = methods.get(method)
    return joint.joint_trainer_class()(
        # f* at log 2 (the untrained loss) makes both gaps near 0: the pick is a close call at every step
        joint=joint.JointPlan(registered, ["comply", "warm"], weights, sampler, options_),
        method_state=None if registered.state is None else registered.state(options_, ["comply", "warm"], None),
        model=model,
        args=dpo_trainer.dpo_config(options, run, str(tmp_path), max_steps=steps),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        callbacks=[dpo_trainer.log_callback(records if records is not None else [])],
    )


@pytest.mark.parametrize("method", ["maxright", "alright"])
def test_one_objective_per_optimiser_step_under_accumulation(method, tiny_base, two_objectives, tmp_path):
    """Accumulation 4: the 4 micro-batches of every optimiser step descend one objective; maxright
    re-evaluates every gap at optimiser steps 0, k, 2k (k = eval_every counts optimiser steps)."""
    steps, accumulation, every = 6, 4, 2
    records = []
    trainer = _joint_trainer(
        method, two_objectives, tiny_base, tmp_path, 2, accumulation, steps, eval_every=every, records=records
    )
    trainer.train()
    assert trainer.state.global_step == steps
    # the training log (one row per optimiser step, TRL averages its micro-batches): stepped is 0 or 1
    stepped = [(r["comply::joint/stepped"], r["warm::joint/stepped"]) for r in records if "comply::joint/stepped" in r]
    assert len(stepped) == steps
    assert all(sorted(pair) == [0.0, 1.0] for pair in stepped), stepped
    micro = trainer.micro_stepped
    assert len(micro) == steps * accumulation
    per_step = [micro[k * accumulation : (k + 1) * accumulation] for k in range(steps)]
    assert all(
        len(group) == 1 and len(group[0]) == 1
        for group in ([list(x) for x in {tuple(m) for m in step}] for step in per_step)
    ), per_step
    if method == "maxright":
        assert trainer.method_state.refresh_steps == list(range(0, steps, every))
    else:
        draws = alright.alright_draws(np.array([0.5, 0.5]), steps, seed=7)
        assert [step[0][0] for step in per_step] == draws.tolist()


def test_mix_with_accumulation_equals_the_larger_batch(tiny_base, two_objectives, tmp_path):
    """Mix with batch 4 × accumulation 2 takes the same optimiser steps (same rows, same mean loss,
    hence the same gradient) as batch 8 × accumulation 1: the adapters after 3 SGD steps agree."""
    adapters = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = _joint_trainer(
            "mix", two_objectives, tiny_base, tmp_path / f"b{batch_size}", batch_size, accumulation, 3
        )
        trainer.train()
        adapters.append(adapter_state(trainer.model))
    moved = sum(float(v.abs().sum()) for k, v in adapters[0].items() if "lora_B" in k)
    assert moved > 0
    for key in adapters[0]:
        torch.testing.assert_close(adapters[1][key], adapters[0][key], rtol=1e-4, atol=1e-6)
