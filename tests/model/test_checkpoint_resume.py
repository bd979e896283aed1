"""Checkpoints inside a stage: a stage stopped part-way (killed, or on a preemption signal) resumes
from its last complete checkpoint and ends with the same adapter, bit for bit on CPU, and the same
training log as a stage that was never interrupted; the checkpoints go once the stage succeeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seqpref import dpo_trainer, joint, methods, train
from seqpref.checkpoints import STAGE_STATE, STOP, StagePreempted, last_checkpoint
from seqpref.options import TrainOptions

RUN = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0, "stage": 1, "objective": "comply"}
# 48 pairs, micro-batches of 4, accumulation 2: 6 optimiser steps; LoRA dropout on, so the RNG matters
OPTIONS = dict(
    beta=0.1,
    learning_rate=3e-3,
    batch_size=4,
    gradient_accumulation_steps=2,
    max_length=64,
    checkpoint_every=2,
    lora={"r": 4, "alpha": 8, "dropout": 0.2},
)


def _interrupt_at(monkeypatch, step: int, how: str):
    """Make the next stage stop during optimiser step ``step``: ``kill`` raises before that step ends
    (only the periodic checkpoints survive); ``signal`` sets the stop event as SIGUSR1 would."""
    original = dpo_trainer.log_callback

    def patched(records):
        callback = original(records)
        base_begin = callback.on_step_begin

        def on_step_begin(args, state, control, **kwargs):
            base_begin(args, state, control, **kwargs)
            if state.global_step == step - 1:
                if how == "kill":
                    raise KeyboardInterrupt("killed")
                STOP.set()

        callback.on_step_begin = on_step_begin
        return callback

    monkeypatch.setattr(dpo_trainer, "log_callback", patched)


def _adapter_bytes(directory: Path) -> bytes:
    return (directory / "adapter_model.safetensors").read_bytes()


def _losses(log_path: Path) -> list[tuple[int, float]]:
    log = pd.read_parquet(log_path)
    return sorted(zip(log.loc[log.metric == "loss", "step"], log.loc[log.metric == "loss", "value"]))


def _budget(log_path: Path) -> dict:
    log = pd.read_parquet(log_path)
    rows = log[log.metric.str.startswith("budget/")]
    return dict(zip(rows["metric"], rows["value"]))


def _sequential(tiny_base, pair_files, tmp_path, name, **changed):
    return train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(tmp_path / name / "adapter"),
        str(tmp_path / name / "log.parquet"),
        TrainOptions(**{**OPTIONS, **changed}),
        RUN,
        checkpoint_dir=str(tmp_path / name / "checkpoints"),
    )


def test_a_checkpoint_of_other_options_is_not_resumed(tiny_base, pair_files, tmp_path, monkeypatch, caplog):
    """Kill a stage after a checkpoint, change its learning rate, rerun: the checkpoint (the old rate's
    optimiser, schedule and batch position) is discarded, named in the log, and the stage trains afresh to
    the adapter of an uninterrupted run at the new rate. A change of how it runs (checkpoint_every) resumes."""
    _sequential(tiny_base, pair_files, tmp_path, "new_rate", learning_rate=1e-3)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, "kill")
        with pytest.raises(KeyboardInterrupt):
            _sequential(tiny_base, pair_files, tmp_path, "cut")
    with caplog.at_level("WARNING", logger="seqpref.train"):
        rerun = _sequential(tiny_base, pair_files, tmp_path, "cut", learning_rate=1e-3)
    assert rerun["resumed_from"] is None
    assert "options.learning_rate: 0.003 -> 0.001" in caplog.text
    assert _adapter_bytes(tmp_path / "cut/adapter") == _adapter_bytes(tmp_path / "new_rate/adapter")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, "kill")
        with pytest.raises(KeyboardInterrupt):
            _sequential(tiny_base, pair_files, tmp_path, "again")
    assert _sequential(tiny_base, pair_files, tmp_path, "again", checkpoint_every=3)["resumed_from"].endswith(
        "checkpoint-4"
    )


@pytest.mark.parametrize(("how", "resumed_at"), [("kill", 2), ("signal", 3)])
def test_interrupted_sequential_stage_resumes_to_the_same_adapter(
    tiny_base, pair_files, tmp_path, monkeypatch, how, resumed_at
):
    reference = _sequential(tiny_base, pair_files, tmp_path, "whole")
    assert reference["steps"] == 6 and reference["resumed_from"] is None
    assert not (tmp_path / "whole/checkpoints").exists()  # removed once the stage succeeded

    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3, how)
        with pytest.raises(KeyboardInterrupt if how == "kill" else StagePreempted):
            _sequential(tiny_base, pair_files, tmp_path, "cut")
    STOP.clear()
    assert not (tmp_path / "cut/adapter/adapter_model.safetensors").exists()
    newest = last_checkpoint(tmp_path / "cut/checkpoints")
    assert newest.endswith(f"checkpoint-{resumed_at}")
    # a signal's checkpoint says so (the SLURM test tells the signal-time save from a periodic one by it)
    saved_on = json.loads((Path(newest) / STAGE_STATE).read_text())["saved_on"]
    assert saved_on == ("signal" if how == "signal" else "schedule")

    resumed = _sequential(tiny_base, pair_files, tmp_path, "cut")
    assert resumed["resumed_from"].endswith(f"checkpoint-{resumed_at}") and resumed["steps"] == 6
    assert _adapter_bytes(tmp_path / "cut/adapter") == _adapter_bytes(tmp_path / "whole/adapter")
    assert _losses(tmp_path / "cut/log.parquet") == _losses(tmp_path / "whole/log.parquet")
    # the budget is part of the checkpoint: the resumed stage counts each pair once, as the whole one did
    assert _budget(tmp_path / "cut/log.parquet") == _budget(tmp_path / "whole/log.parquet")
    assert (
        _budget(tmp_path / "whole/log.parquet")["budget/pairs"]
        == 6 * OPTIONS["batch_size"] * OPTIONS["gradient_accumulation_steps"]
    )
    assert not (tmp_path / "cut/checkpoints").exists()


def test_a_checkpoint_truncated_by_a_crash_falls_back_to_the_one_before(tiny_base, pair_files, tmp_path, monkeypatch):
    """A node crash can leave the completion marker beside a truncated ``optimizer.pt``: the rerun skips
    that checkpoint for the previous one and still ends with the uninterrupted stage's adapter."""
    _sequential(tiny_base, pair_files, tmp_path, "whole")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5, "kill")  # checkpoints at steps 2 and 4 survive
        with pytest.raises(KeyboardInterrupt):
            _sequential(tiny_base, pair_files, tmp_path, "crash")
    newest = tmp_path / "crash/checkpoints/checkpoint-4"
    assert last_checkpoint(tmp_path / "crash/checkpoints") == str(newest)
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    assert last_checkpoint(tmp_path / "crash/checkpoints").endswith("checkpoint-2")
    resumed = _sequential(tiny_base, pair_files, tmp_path, "crash")
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert _adapter_bytes(tmp_path / "crash/adapter") == _adapter_bytes(tmp_path / "whole/adapter")


def test_a_checkpoint_cut_short_is_skipped(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / STAGE_STATE).write_text("{}")
    (tmp_path / "checkpoint-4").mkdir()  # killed while saving: no stage state written
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / f"{STAGE_STATE}.tmp").write_text("{")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert last_checkpoint(tmp_path / "absent") is None


def test_interrupted_maxright_stage_resumes_to_the_same_adapter(tiny_base, pair_files, tmp_path, monkeypatch):
    """MAXRIGHT's gaps and pick are part of the checkpoint: the resumed stage picks as the whole one did."""
    objectives = [
        ("comply", pair_files["pairs"], pair_files["base_logps"]),
        ("again", pair_files["pairs"], pair_files["base_logps"]),
    ]
    settings = methods.options("maxright", eval_every=2, optimum={"comply": 0.69, "again": 0.70})
    run = {**RUN, "method": "maxright", "objective": "joint"}

    def stage(name):
        return joint.train_joint_stage(
            tiny_base,
            objectives,
            1,
            str(tmp_path / name / "adapter"),
            str(tmp_path / name / "log.parquet"),
            TrainOptions(**OPTIONS),
            settings,
            run,
            checkpoint_dir=str(tmp_path / name / "checkpoints"),
        )

    whole = stage("whole")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 4, "signal")
        with pytest.raises(StagePreempted):
            stage("cut")
    STOP.clear()
    resumed = stage("cut")
    assert resumed["resumed_from"].endswith("checkpoint-4")
    assert resumed["micro_batches_per_objective"] == whole["micro_batches_per_objective"]
    assert _adapter_bytes(tmp_path / "cut/adapter") == _adapter_bytes(tmp_path / "whole/adapter")
    log_whole, log_cut = (pd.read_parquet(tmp_path / n / "log.parquet") for n in ("whole", "cut"))
    gaps = lambda log: log[log.metric == "joint/gap"].sort_values(["step", "objective"])["value"].tolist()  # noqa: E731
    assert gaps(log_cut) == gaps(log_whole)
    assert _budget(tmp_path / "cut/log.parquet") == _budget(tmp_path / "whole/log.parquet")
