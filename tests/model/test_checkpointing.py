"""Activation checkpointing (the GPU-memory option) trains the same LoRA stage as without it."""

from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import load_file

from seqpref import train
from seqpref.options import TrainOptions

RUN = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0, "stage": 1, "objective": "comply"}


def test_activation_checkpointing_gives_the_same_stage(tiny_base, pair_files, tmp_path):
    results = {}
    for checkpointing in (False, True):
        options = TrainOptions(
            beta=0.1,
            learning_rate=3e-3,
            batch_size=16,
            max_length=64,
            activation_checkpointing=checkpointing,
            lora={"r": 4, "alpha": 8},
        )
        out = tmp_path / f"ckpt{checkpointing}"
        train.train_stage(
            tiny_base,
            pair_files["pairs"],
            pair_files["base_logps"],
            str(out / "stage1"),
            str(out / "log.parquet"),
            options,
            RUN,
        )
        log = pd.read_parquet(out / "log.parquet")
        results[checkpointing] = (
            log[log["metric"] == "loss"]["value"].to_numpy(),
            load_file(str(out / "stage1" / "adapter_model.safetensors")),
        )
    (loss_plain, weights_plain), (loss_ckpt, weights_ckpt) = results[False], results[True]
    assert len(loss_plain) == 3
    torch.testing.assert_close(torch.tensor(loss_ckpt), torch.tensor(loss_plain), atol=1e-5, rtol=0)
    assert weights_plain.keys() == weights_ckpt.keys()
    for name in weights_plain:
        torch.testing.assert_close(weights_ckpt[name], weights_plain[name], atol=1e-5, rtol=1e-4)
    assert any(w.abs().sum() > 0 for n, w in weights_plain.items() if "lora_B" in n)  # it did train
