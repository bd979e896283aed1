"""The gradient probe's cosine equals the cosine of two gradients computed separately, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dpo_by_hand import BETA, MAX_LENGTH, manual_dpo_loss as _manual_dpo_loss

from seqpref import base_model, diagnostics, lab, logps, train


def test_probe_cosine_equals_separately_computed_gradients(tiny_base, tmp_path):
    from trl import DPOConfig

    model, tokenizer = base_model.load_base(tiny_base)
    current = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), 8, seed=3, id_prefix="c")
    other = lab.make_pairs(lab.LabObjective(prefer={"closer": "warm"}), 8, seed=4, id_prefix="o")
    ref_current = logps.pair_logps(model, tokenizer, current, MAX_LENGTH, 8)
    ref_other = logps.pair_logps(model, tokenizer, other, MAX_LENGTH, 8)

    config = DPOConfig(output_dir=str(tmp_path), beta=BETA, max_length=MAX_LENGTH, per_device_train_batch_size=8,
                       report_to=[], use_cpu=True, bf16=False, disable_tqdm=True)
    options = diagnostics.DiagnosticsOptions(every=1, batch_size=8)
    probe = diagnostics.GradientProbe([("warm", 1, train.training_dataset(other, ref_other, tokenizer))], options)
    trainer = train._trainer_class()(
        model=model, args=config, train_dataset=train.training_dataset(current, ref_current, tokenizer),
        processing_class=tokenizer, peft_config=train.LoraOptions(r=4, alpha=8).peft_config(), gradient_probe=probe,
    )
    peft_model = trainer.model
    generator = torch.Generator().manual_seed(0)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:  # B starts at 0; move both factors so every gradient is non-trivial
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    peft_model.train()

    g_current = torch.autograd.grad(_manual_dpo_loss(peft_model, tokenizer, current, ref_current), params)
    g_other = torch.autograd.grad(_manual_dpo_loss(peft_model, tokenizer, other, ref_other), params)
    flat_current = torch.cat([g.ravel() for g in g_current]).double()
    flat_other = torch.cat([g.ravel() for g in g_other]).double()
    expected = float(flat_current @ flat_other / (flat_current.norm() * flat_other.norm()))

    for p, g in zip(params, g_current):  # the "current" gradient the trainer would apply
        p.grad = g.clone()
    logged_before = {k: list(v) for k, v in trainer._metrics["train"].items()}
    probe.record(trainer, peft_model, step=1)
    row = probe.rows[-1]
    assert row["cosine"] == pytest.approx(expected, abs=1e-5)
    assert row["norm_current"] == pytest.approx(float(flat_current.norm()), rel=1e-5)
    assert row["norm_other"] == pytest.approx(float(flat_other.norm()), rel=1e-4)
    assert float(flat_other.norm()) > 1e-4 and abs(expected) < 0.999  # two real, different gradients
    for p, g in zip(params, g_current):  # the probe left the training gradient untouched
        torch.testing.assert_close(p.grad, g)
    assert {k: list(v) for k, v in trainer._metrics["train"].items()} == logged_before


def test_gradient_cosine_accumulates_per_parameter():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])
    row = diagnostics.gradient_cosine([a, b], (torch.tensor([1.0, 0.0]), torch.tensor([0.0, -2.0, 0.0])))
    # flattened: (1, 0, 0, 2, 0) · (1, 0, 0, -2, 0) = 1 - 4 = -3; norms √5, √5
    assert row["cosine"] == pytest.approx(-3 / 5)
    assert row["norm_current"] == pytest.approx(np.sqrt(5))
    row = diagnostics.gradient_cosine([a, b], (None, torch.tensor([0.0, 1.0, 0.0])))
    assert row["cosine"] == pytest.approx(2 / (np.sqrt(5) * 1.0))


def test_stage2_training_writes_diagnostics(tiny_base, pair_files, tmp_path):
    other = lab.make_pairs(lab.LabObjective(prefer={"opener": "refuse"}), 24, seed=5, id_prefix="r")
    from seqpref import tables

    model, tokenizer = base_model.load_base(tiny_base)
    tables.write_table(other, tmp_path / "other.parquet", tables.PAIRS, {})
    tables.write_table(logps.pair_logps(model, tokenizer, other, 64, 8), tmp_path / "other_logps.parquet", tables.LOGPS, {})
    options = train.TrainOptions(beta=BETA, learning_rate=3e-3, batch_size=8, max_length=64, lora={"r": 4, "alpha": 8})
    run = {"setting": "lab", "method": "dpo", "order": "refuse-comply", "seed": 0, "stage": 2, "objective": "comply"}
    summary = train.train_stage(
        tiny_base, pair_files["pairs"], pair_files["base_logps"], str(tmp_path / "stage2"), str(tmp_path / "log.parquet"),
        options, run, None, [("refuse", 1, str(tmp_path / "other.parquet"), str(tmp_path / "other_logps.parquet"))],
        diagnostics.DiagnosticsOptions(every=2, batch_size=8), str(tmp_path / "diag.parquet"),
    )
    frame = pd.read_parquet(tmp_path / "diag.parquet")
    assert list(frame.columns) == tables.DIAGNOSTICS.names
    assert frame["step"].tolist() == [1, 2, 4, 6]  # 48 pairs / 8 = 6 steps; step 1 and every 2nd
    assert (frame["other_objective"] == "refuse").all() and frame["cosine"].between(-1, 1).all()
    assert (frame["norm_current"] > 0).all() and summary["diagnostics_seconds"] > 0
    # the probe's losses did not leak into the logged training metrics: one loss row per step
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert log[log.metric == "loss"]["step"].tolist() == list(range(1, 7))


def test_diagnostics_can_be_turned_off(tiny_base, pair_files, tmp_path):
    from seqpref import tables

    options = train.TrainOptions(beta=BETA, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8})
    run = {"setting": "lab", "method": "dpo", "order": "x-comply", "seed": 0, "stage": 2, "objective": "comply"}
    summary = train.train_stage(
        tiny_base, pair_files["pairs"], pair_files["base_logps"], str(tmp_path / "stage2"), str(tmp_path / "log.parquet"),
        options, run, None, [("x", 1, pair_files["pairs"], pair_files["base_logps"])],
        diagnostics.DiagnosticsOptions(enabled=False), str(tmp_path / "diag.parquet"),
    )
    frame = pd.read_parquet(tmp_path / "diag.parquet")
    assert frame.empty and list(frame.columns) == tables.DIAGNOSTICS.names
    assert summary["diagnostics_seconds"] == 0.0
