"""The gradient probe's cosine equals the cosine of two gradients computed separately, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from dpo_by_hand import BETA, MAX_LENGTH
from dpo_by_hand import manual_dpo_loss as _manual_dpo_loss

from seqpref import base_model, diagnostics, dpo_trainer, lab, logps, train
from seqpref.options import CHANGE_NORM, DiagnosticsOptions, LoraOptions, TrainOptions


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.ravel() for g in grads]).double()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _probe_setup(tiny_base, tmp_path, recompute_current=False):
    """A trainer with a gradient probe on a tiny model whose LoRA factors are moved off 0, the current
    (16 pairs) and earlier (16 pairs) objectives, their reference log-probs, and a by-hand gradient."""
    from trl import DPOConfig

    model, tokenizer = base_model.load_base(tiny_base)
    current = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), 16, seed=3, id_prefix="c")
    other = lab.make_pairs(lab.LabObjective(prefer={"closer": "warm"}), 16, seed=4, id_prefix="o")
    ref_current = logps.pair_logps(model, tokenizer, current, MAX_LENGTH, 8)
    ref_other = logps.pair_logps(model, tokenizer, other, MAX_LENGTH, 8)

    config = DPOConfig(
        output_dir=str(tmp_path),
        beta=BETA,
        max_length=MAX_LENGTH,
        per_device_train_batch_size=8,
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
    )
    options = DiagnosticsOptions(every=1, batch_size=8)
    current_set = dpo_trainer.training_dataset(current, ref_current, tokenizer)
    other_set = dpo_trainer.training_dataset(other, ref_other, tokenizer)
    probe = diagnostics.GradientProbe(
        [("warm", 1, other_set)], options, current=("comply", 2, current_set), recompute_current=recompute_current
    )
    trainer = dpo_trainer.trainer_class()(
        model=model,
        args=config,
        train_dataset=current_set,
        processing_class=tokenizer,
        peft_config=LoraOptions(r=4, alpha=8).peft_config(),
        gradient_probe=probe,
    )
    peft_model = trainer.model
    generator = torch.Generator().manual_seed(0)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:  # B starts at 0; move both factors so every gradient is non-trivial
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    peft_model.train()
    refs = pd.concat([ref_current, ref_other]).set_index("pair_id")

    def by_hand(frame):
        loss = _manual_dpo_loss(peft_model, tokenizer, frame, refs.loc[frame.pair_id].reset_index())
        return torch.autograd.grad(loss, params)

    return {
        "trainer": trainer,
        "probe": probe,
        "model": peft_model,
        "params": params,
        "current": current,
        "other": other,
        "current_set": current_set,
        "other_set": other_set,
        "by_hand": by_hand,
    }


def test_probe_cosines_and_noise_floors_equal_separately_computed_gradients(tiny_base, tmp_path):
    """cross = cos(step gradient, earlier objective's batch A); floor_current = cos(step gradient, a
    batch of the current objective's pairs that the step did not train on); floor_other = cos(earlier
    batch A, earlier batch B): each equals the cosine of gradients computed here by hand."""
    setup = _probe_setup(tiny_base, tmp_path)
    trainer, probe, peft_model, params = setup["trainer"], setup["probe"], setup["model"], setup["params"]
    current, other, current_set = setup["current"], setup["other"], setup["current_set"]
    step_pairs, unseen = (
        current.iloc[8:],
        current.iloc[:8],
    )  # the step trains the second half: the floor takes the first
    g_step = _flat(setup["by_hand"](step_pairs))
    g_unseen = _flat(setup["by_hand"](unseen))
    g_a = _flat(setup["by_hand"](other.iloc[:8]))
    g_b = _flat(setup["by_hand"](other.iloc[8:]))

    probe.prepare(trainer)
    step_batch = probe._collate(trainer, current_set.select(range(8, 16)), "step")[1]
    probe.observe(step_batch)  # as training_step does before the backward
    grads = setup["by_hand"](step_pairs)
    for p, g in zip(params, grads):  # the step's gradient the trainer would apply
        p.grad = g.clone()
    logged_before = trainer.pending_metrics()
    probe.record(trainer, peft_model, step=1)
    rows = {row["kind"]: row for row in probe.rows}
    assert set(rows) == {"cross", "floor_current", "floor_other"}
    assert rows["cross"]["cosine"] == pytest.approx(_cos(g_step, g_a), abs=1e-5)
    assert rows["floor_current"]["cosine"] == pytest.approx(_cos(g_step, g_unseen), abs=1e-5)
    assert rows["floor_other"]["cosine"] == pytest.approx(_cos(g_a, g_b), abs=1e-5)
    assert rows["cross"]["norm_other"] == pytest.approx(float(g_a.norm()), rel=1e-4)
    assert rows["floor_other"]["norm_current"] == pytest.approx(float(g_b.norm()), rel=1e-4)  # B: the step-sized side
    assert rows["floor_other"]["norm_other"] == pytest.approx(float(g_a.norm()), rel=1e-4)
    assert rows["floor_current"]["norm_current"] == pytest.approx(float(g_step.norm()), rel=1e-5)
    assert [rows[k]["n_other"] for k in ("cross", "floor_current", "floor_other")] == [8, 8, 8]
    # four different gradients: the floors are not the cross cosine under another name
    values = [_cos(g_step, g_a), _cos(g_step, g_unseen), _cos(g_a, g_b)]
    assert len({round(v, 4) for v in values}) == 3
    for p, g in zip(params, grads):  # the probe left the training gradient untouched
        torch.testing.assert_close(p.grad, g)
    assert trainer.pending_metrics() == logged_before
    probe.end_step()
    assert probe.window == set()


def test_a_replayed_step_is_probed_on_its_own_objectives_pairs(tiny_base, tmp_path):
    """A replay step trains 4 current pairs and 4 replayed pairs of the earlier objective — the first 4 of
    its probe batch A. The applied gradient then partly *is* batch A's, which would inflate ``cross``: the
    probe recomputes the current gradient on the 4 own pairs (dropout off, DPO only), and keeps the
    applied one as ``cross_step``. Both equal the cosines of gradients computed here by hand."""
    from datasets import concatenate_datasets

    setup = _probe_setup(tiny_base, tmp_path, recompute_current=True)
    trainer, probe, params = setup["trainer"], setup["probe"], setup["params"]
    current, other = setup["current"], setup["other"]
    own, replayed = current.iloc[8:12], other.iloc[:4]
    g_applied = setup["by_hand"](pd.concat([own, replayed], ignore_index=True))
    g_own, g_a = _flat(setup["by_hand"](own)), _flat(setup["by_hand"](other.iloc[:8]))
    g_unseen = _flat(setup["by_hand"](current.iloc[:8]))

    probe.prepare(trainer)
    mixed = concatenate_datasets([setup["current_set"].select(range(8, 12)), setup["other_set"].select(range(4))])
    probe.observe(probe._collate(trainer, mixed, "step")[1])
    for p, g in zip(params, g_applied):
        p.grad = g.clone()
    probe.record(trainer, setup["model"], step=1)
    rows = {row["kind"]: row for row in probe.rows}
    assert set(rows) == {"cross", "cross_step", "floor_current", "floor_other"}
    assert rows["cross"]["cosine"] == pytest.approx(_cos(g_own, g_a), abs=1e-5)
    assert rows["cross_step"]["cosine"] == pytest.approx(_cos(_flat(g_applied), g_a), abs=1e-5)
    assert rows["floor_current"]["cosine"] == pytest.approx(_cos(g_own, g_unseen), abs=1e-5)
    assert rows["cross"]["n_current"] == 4 and rows["cross_step"]["n_current"] == 8
    assert rows["cross_step"]["cosine"] > rows["cross"]["cosine"] + 0.05  # the replayed A pairs inflate it
    for p, g in zip(params, g_applied):  # the training gradient is left as it was
        torch.testing.assert_close(p.grad, g)


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
    tables.write_table(
        logps.pair_logps(model, tokenizer, other, 64, 8), tmp_path / "other_logps.parquet", tables.LOGPS, {}
    )
    options = TrainOptions(beta=BETA, learning_rate=3e-3, batch_size=8, max_length=64, lora={"r": 4, "alpha": 8})
    run = {"setting": "lab", "method": "dpo", "order": "refuse-comply", "seed": 0, "stage": 2, "objective": "comply"}
    summary = train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(tmp_path / "stage2"),
        str(tmp_path / "log.parquet"),
        options,
        run,
        None,
        [("refuse", 1, str(tmp_path / "other.parquet"), str(tmp_path / "other_logps.parquet"))],
        DiagnosticsOptions(every=2, batch_size=8),
        str(tmp_path / "diag.parquet"),
    )
    frame = pd.read_parquet(tmp_path / "diag.parquet")
    assert list(frame.columns) == tables.DIAGNOSTICS.names
    cross = frame[frame.kind == "cross"]
    assert cross["step"].tolist() == [1, 2, 4, 6]  # 48 pairs / 8 = 6 steps; step 1 and every 2nd
    assert (cross["other_objective"] == "refuse").all()
    # each probe also measured both noise floors (24 earlier pairs: a disjoint batch B exists)
    assert frame.groupby("step")["kind"].apply(sorted).tolist() == [["cross", "floor_current", "floor_other"]] * 4
    assert (frame.loc[frame.kind == "floor_current", "other_objective"] == "comply").all()
    assert (frame["norm_current"] > 0).all() and summary["diagnostics_seconds"] > 0
    # the probe's losses did not leak into the logged training metrics: one loss row per step
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert log[log.metric == "loss"]["step"].tolist() == list(range(1, 7))
    # and the distance the stage moved the adapter, at its last step (the sham control reads it)
    moved = log[log.metric == CHANGE_NORM]
    assert moved["step"].tolist() == [6] and moved["value"].item() == pytest.approx(summary["adapter_change_norm"])


def test_diagnostics_can_be_turned_off(tiny_base, pair_files, tmp_path):
    from seqpref import tables

    options = TrainOptions(beta=BETA, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8})
    run = {"setting": "lab", "method": "dpo", "order": "x-comply", "seed": 0, "stage": 2, "objective": "comply"}
    summary = train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(tmp_path / "stage2"),
        str(tmp_path / "log.parquet"),
        options,
        run,
        None,
        [("x", 1, pair_files["pairs"], pair_files["base_logps"])],
        DiagnosticsOptions(enabled=False),
        str(tmp_path / "diag.parquet"),
    )
    frame = pd.read_parquet(tmp_path / "diag.parquet")
    assert frame.empty and list(frame.columns) == tables.DIAGNOSTICS.names
    assert summary["diagnostics_seconds"] == 0.0
