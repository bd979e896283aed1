"""Adapter movement: ΔW from saved tensors equals PEFT's own delta weight; norms and cosines by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqpref import movement


@pytest.mark.parametrize("use_rslora", [False, True])
def test_effective_update_equals_peft_delta_weight(tiny_base, tmp_path, use_rslora):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from seqpref import base_model

    model, _ = base_model.load_base(tiny_base)
    config = LoraConfig(r=4, lora_alpha=12, target_modules="all-linear", use_rslora=use_rslora)
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:  # B starts at 0: give both factors random values
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(tmp_path)
    ours = movement.load_updates(tmp_path)
    expected_scale = 12 / math.sqrt(4) if use_rslora else 12 / 4
    assert movement.lora_scaling(json.loads((tmp_path / "adapter_config.json").read_text())) == expected_scale
    layers = {n: m for n, m in peft_model.named_modules() if hasattr(m, "get_delta_weight") and hasattr(m, "lora_A")}
    assert len(ours) == len(layers) > 0
    for name, layer in layers.items():
        key = name.removeprefix("base_model.model.")
        torch.testing.assert_close(ours[key], layer.get_delta_weight("default").float(), rtol=1e-5, atol=1e-6)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    a = next(v for k, v in saved.items() if k.endswith("q_proj.lora_A.weight"))
    b = next(v for k, v in saved.items() if k.endswith("q_proj.lora_B.weight"))
    q_name = next(k for k in ours if k.endswith("q_proj"))
    torch.testing.assert_close(ours[q_name], expected_scale * b @ a)


def test_movement_rows_norms_and_cosines_by_hand():
    w1 = {"m": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    w2 = {"m": torch.tensor([[1.0, 2.0], [0.0, 0.0]])}  # update of stage 2: [[0, 2], [0, 0]]
    w3 = {"m": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}  # update of stage 3: [[0, -2], [0, 0]]
    rows = [r for r in movement.movement_rows([w1, w2, w3]) if r["module"] == "m"]
    assert [r["update_norm"] for r in rows] == [1.0, 2.0, 2.0]
    assert rows[1]["total_norm"] == pytest.approx(math.sqrt(5))
    assert np.isnan(rows[0]["cosine_previous"])
    assert rows[1]["cosine_previous"] == pytest.approx(0.0)  # orthogonal updates
    assert rows[2]["cosine_previous"] == pytest.approx(-1.0)  # stage 3 undoes stage 2
    everything = [r for r in movement.movement_rows([w1, w2, w3]) if r["module"] == "all"]
    assert [r["update_norm"] for r in everything] == [1.0, 2.0, 2.0]


def test_movement_of_trained_stages(tiny_base, two_stages_for_movement):
    out = two_stages_for_movement
    run = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0}
    frame = movement.run_movement([str(out / "stage1"), str(out / "stage2")], run)
    total = frame[frame.module == "all"].set_index("stage")
    assert (total["update_norm"] > 0).all()
    assert frame.loc[frame.stage == 1, "objective"].iloc[0] == "comply"
    assert -1 <= total.loc[2, "cosine_previous"] <= 1
