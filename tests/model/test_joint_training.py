"""Joint methods on a tiny model: mix's loss against hand-written DPO losses, and whole joint stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from dpo_by_hand import BETA, MAX_LENGTH, manual_dpo_loss

from seqpref import base_model, joint, lab, logps, tables, train

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
    data = [_objective(tiny_base, {"opener": "comply"}, 8, 3, "c"), _objective(tiny_base, {"closer": "warm"}, 8, 4, "w")]
    frames = [train.training_dataset(pairs, ref, tokenizer) for pairs, ref in data]
    dataset = concatenate_datasets([f.add_column("objective", [o] * len(f)) for o, f in enumerate(frames)])
    weights = np.array([0.25, 0.75])
    sampler = joint.JointBatchSampler([8, 8], 4, [[0, 1]], seed=0)
    config = DPOConfig(output_dir=str(tmp_path), beta=BETA, max_length=MAX_LENGTH, per_device_train_batch_size=4,
                       report_to=[], use_cpu=True, bf16=False, disable_tqdm=True)
    trainer = joint._joint_trainer_class()(
        joint=joint.JointPlan("mix", ["comply", "warm"], weights, sampler), model=model, args=config,
        train_dataset=dataset, processing_class=tokenizer, peft_config=train.LoraOptions(r=4, alpha=8).peft_config(),
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
    logged = trainer._metrics["train"]
    assert "comply::rewards/margins" in logged and "warm::rewards/margins" in logged
    assert "rewards/margins" not in logged  # every TRL metric is filed under its objective


@pytest.fixture(scope="module")
def two_objectives(tiny_base, pair_files, tmp_path_factory):
    """Train pair files of two objectives: comply (the shared fixture, 48 pairs) and warm (24 pairs)."""
    out = tmp_path_factory.mktemp("warm")
    pairs, ref = _objective(tiny_base, {"closer": "warm"}, 24, 5, "w")
    tables.write_table(pairs, out / "pairs.parquet", tables.PAIRS, {"test": True})
    tables.write_table(ref, out / "base_logps.parquet", tables.LOGPS, {"test": True})
    return [("comply", pair_files["pairs"], pair_files["base_logps"]),
            ("warm", str(out / "pairs.parquet"), str(out / "base_logps.parquet"))]


@pytest.mark.parametrize("method", ["mix", "alright", "maxright"])
def test_joint_stages_take_the_sequential_budget(method, tiny_base, two_objectives, tmp_path):
    options = train.TrainOptions(**OPTIONS)
    settings = joint.JointOptions(method=method, weights={"warm": 3.0}, eval_every=2,
                                  optimum={"comply": 0.60, "warm": 0.65} if method == "maxright" else {})
    previous = None
    for stage, budget in ((1, 6), (2, 3)):  # ceil(48/8) steps, then ceil(24/8): the k-th objective's
        run = {**RUN, "method": method, "stage": stage}
        summary = joint.train_joint_stage(
            tiny_base, two_objectives, stage, str(tmp_path / f"stage{stage}"), str(tmp_path / f"log{stage}.parquet"),
            options, settings, run, previous,
        )
        assert summary["steps"] == budget
        counts = summary["micro_batches_per_objective"]
        if method == "mix":
            assert counts == {"comply": budget, "warm": budget}
        else:
            assert sum(counts.values()) == budget
        if method == "alright":
            draws = joint.alright_draws(np.array([0.25, 0.75]), budget, seed=stage)
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
    options = train.TrainOptions(**OPTIONS)
    settings = joint.JointOptions(method="maxright", optimum={"comply": 0.6})
    with pytest.raises(ValueError, match=r"maxright needs f\* of \['warm'\]"):
        joint.train_joint_stage(tiny_base, two_objectives, 1, str(tmp_path / "s1"), str(tmp_path / "l.parquet"),
                                options, settings, {**RUN, "method": "maxright", "stage": 1})


def test_sequential_stage_takes_stage_steps(two_stages_for_movement):
    log = pd.read_parquet(two_stages_for_movement / "log1.parquet")
    assert log["step"].max() == train.stage_steps(48, 16)
