"""A tiny lab base model and lab pairs, built once per session (a few seconds on CPU)."""

from __future__ import annotations

import pytest
import torch

from seqpref import base_model, lab, logps, tables
from seqpref.options import LabModelOptions, TrainOptions


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Directory of a tiny, briefly pretrained lab model (vocab 256, hidden 32, 1 layer)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("base")
    options = LabModelOptions(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        corpus_size=400,
        steps=40,
        batch_size=16,
    )
    base_model.build_lab_base(out, options)
    return str(out)


@pytest.fixture(scope="session")
def lab_pairs():
    """48 pairs of a lab objective that prefers the complying opener (PAIRS columns)."""
    return lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), 48, seed=1, id_prefix="comply")


@pytest.fixture(scope="session")
def pair_files(tiny_base, lab_pairs, tmp_path_factory):
    """The pairs and their base log-probs written as the workflow writes them; returns their paths."""
    out = tmp_path_factory.mktemp("data")
    tables.write_table(lab_pairs, out / "pairs.parquet", tables.PAIRS, {"test": True})
    model, tokenizer = base_model.load_base(tiny_base)
    frame = logps.pair_logps(model, tokenizer, lab_pairs, max_length=64, batch_size=16)
    tables.write_table(frame, out / "base_logps.parquet", tables.LOGPS, {"test": True})
    return {"pairs": str(out / "pairs.parquet"), "base_logps": str(out / "base_logps.parquet")}


@pytest.fixture(scope="session")
def two_stages_for_movement(tiny_base, pair_files, tmp_path_factory):
    """Two trained stages (adapters in stage1/, stage2/) on the lab pairs."""
    from seqpref import train

    out = tmp_path_factory.mktemp("movement")
    previous = None
    for stage in (1, 2):
        train.train_stage(
            tiny_base,
            pair_files["pairs"],
            pair_files["base_logps"],
            str(out / f"stage{stage}"),
            str(out / f"log{stage}.parquet"),
            TrainOptions(beta=0.1, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8}),
            {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0, "stage": stage, "objective": "comply"},
            previous,
        )
        previous = str(out / f"stage{stage}")
    return out
