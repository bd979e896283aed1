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
        torch.testing.assert_close(
            ours[key].dense().float(), layer.get_delta_weight("default").float(), rtol=1e-5, atol=1e-6
        )
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    a = next(v for k, v in saved.items() if k.endswith("q_proj.lora_A.weight"))
    b = next(v for k, v in saved.items() if k.endswith("q_proj.lora_B.weight"))
    q_name = next(k for k in ours if k.endswith("q_proj"))
    torch.testing.assert_close(ours[q_name].dense().float(), expected_scale * b @ a)


def _full_rank(matrix) -> movement.LowRank:
    """A dense matrix as LowRank(W, I)."""
    w = torch.tensor(matrix, dtype=torch.float64)
    return movement.LowRank(w, torch.eye(w.shape[1], dtype=torch.float64))


def test_movement_rows_norms_and_cosines_by_hand():
    w1 = {"m": _full_rank([[1.0, 0.0], [0.0, 0.0]])}
    w2 = {"m": _full_rank([[1.0, 2.0], [0.0, 0.0]])}  # update of stage 2: [[0, 2], [0, 0]]
    w3 = {"m": _full_rank([[1.0, 0.0], [0.0, 0.0]])}  # update of stage 3: [[0, -2], [0, 0]]
    rows = [r for r in movement.movement_rows([w1, w2, w3]) if r["module"] == "m"]
    assert [r["update_norm"] for r in rows] == [1.0, 2.0, 2.0]
    assert rows[1]["total_norm"] == pytest.approx(math.sqrt(5))
    assert np.isnan(rows[0]["cosine_previous"])
    assert rows[1]["cosine_previous"] == pytest.approx(0.0)  # orthogonal updates
    assert rows[2]["cosine_previous"] == pytest.approx(-1.0)  # stage 3 undoes stage 2
    everything = [r for r in movement.movement_rows([w1, w2, w3]) if r["module"] == "all"]
    assert [r["update_norm"] for r in everything] == [1.0, 2.0, 2.0]


def _dense_rows(stages: list[dict[str, torch.Tensor]]) -> list[dict]:
    """The movement table computed the direct way, from dense ΔW (float64): the oracle of the low-rank path."""
    rows, previous_total, previous_update = [], None, None
    for stage, total in enumerate(stages, start=1):
        update = {n: w - previous_total[n] if previous_total else w for n, w in total.items()}
        flat = {
            "all": [torch.cat([x.ravel() for x in d.values()]) if d else None for d in (update, total, previous_update)]
        }
        flat.update({n: [update[n], total[n], previous_update[n] if previous_update else None] for n in total})
        for name, (u, w, p) in flat.items():
            cosine = float((u * p).sum() / (u.norm() * p.norm())) if p is not None else float("nan")
            rows.append(
                {
                    "stage": stage,
                    "module": name,
                    "update_norm": float(u.norm()),
                    "total_norm": float(w.norm()),
                    "cosine_previous": cosine,
                }
            )
        previous_total, previous_update = total, update
    return rows


def test_low_rank_movement_equals_dense_on_random_adapters():
    """Three stages of random rank-4 LoRA factors on modules of different shapes: every norm and
    cosine of the low-rank computation equals the one from dense ΔW = s·B·A."""
    generator = torch.Generator().manual_seed(3)
    shapes = {"layers.0.q_proj": (24, 16), "layers.0.down_proj": (16, 40), "layers.1.k_proj": (8, 16)}
    stages = []
    for _ in range(3):
        weights = {}
        for name, (out, inp) in shapes.items():
            weights[f"base_model.model.{name}.lora_A.weight"] = torch.randn(4, inp, generator=generator)
            weights[f"base_model.model.{name}.lora_B.weight"] = torch.randn(out, 4, generator=generator) * 0.1
        stages.append(movement.factored_updates(weights, scaling=2.5))
    ours = movement.movement_rows(stages)
    dense = _dense_rows([{n: f.left.double() @ f.right.double() for n, f in stage.items()} for stage in stages])
    key = lambda r: (r["stage"], r["module"])  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, dense))
    dense_by_key = {key(r): r for r in dense}
    for row in ours:
        expected = dense_by_key[key(row)]
        for column in ("update_norm", "total_norm", "cosine_previous"):
            if row["stage"] == 1 and column == "cosine_previous":
                assert np.isnan(row[column]) and np.isnan(expected[column])
            else:
                assert row[column] == pytest.approx(expected[column], rel=1e-9, abs=1e-12), (key(row), column)


def test_movement_of_trained_stages(tiny_base, two_stages_for_movement):
    out = two_stages_for_movement
    run = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0}
    frame = movement.run_movement([str(out / "stage1"), str(out / "stage2")], run)
    total = frame[frame.module == "all"].set_index("stage")
    assert (total["update_norm"] > 0).all()
    assert frame.loc[frame.stage == 1, "objective"].iloc[0] == "comply"
    assert -1 <= total.loc[2, "cosine_previous"] <= 1


@pytest.mark.parametrize(
    "extra",
    [{"use_dora": True}, {"modules_to_save": ["lm_head"]}, {"lora_bias": True}, {"rank_pattern": {"q_proj": 4}}],
)
def test_adapters_that_are_not_plain_lora_are_refused(extra):
    """DoRA, LoRA biases, trained modules and rank patterns are not ΔW = s·B·A: movement says so."""
    with pytest.raises(ValueError, match="plain LoRA"):
        movement.lora_scaling({"r": 8, "lora_alpha": 16, **extra})
