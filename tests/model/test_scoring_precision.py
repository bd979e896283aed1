"""Scoring scores the trained model: in bf16 the adapter stays unmerged, because merging a small
LoRA update into bf16 weights rounds much of it away (score.py's docstring)."""

from __future__ import annotations

import numpy as np
import torch
from independent_forward import bf16_layout_noise, padded_unmerged_logps, unmerged_logps

from seqpref import base_model, logps
from seqpref.lora import load_policy
from seqpref.options import LoraOptions

MAX_LENGTH = 64


def _small_adapter(tiny_base, out_dir) -> None:
    """An adapter whose update is small next to the weights (|ΔW| ~ 1e-4 against weights ~ 0.1), as
    after a few DPO steps at a paper learning rate, saved as training saves it."""
    from peft import get_peft_model

    model, _ = base_model.load_base(tiny_base, "float32")
    peft_model = get_peft_model(model, LoraOptions(r=4, alpha=8).peft_config())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(2e-4 * torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(out_dir)


def _merged_logps(tiny_base, adapter, pairs, dtype):
    """What the scorer did before: the adapter merged into the base weights in ``dtype``."""
    from peft import PeftModel

    model, tokenizer = base_model.load_base(tiny_base, dtype)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    return logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 16)


def test_bf16_scorer_keeps_the_adapter_unmerged(tiny_base, lab_pairs, tmp_path):
    """The bf16 scorer against an independent unpadded forward (not seqpref.logps): within the bf16
    rounding that two layouts of the same computation show on this machine (6 sigma sqrt(n), sigma the
    per-token RMS difference between the scorer at batch sizes 16 and 1 and between the independent
    forward unpadded and padded); the merged-in-bf16 path, which rounds the small update away, is not."""
    adapter = tmp_path / "adapter"
    _small_adapter(tiny_base, adapter)
    pairs = lab_pairs.assign(prompt_messages=None)
    model, tokenizer = load_policy(tiny_base, str(adapter), "bfloat16")
    assert any(p.dtype == torch.bfloat16 for p in model.parameters())
    assert not any(hasattr(m, "merged") and m.merged for m in model.modules())
    scored = {
        size: logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, size).set_index("pair_id") for size in (16, 1)
    }

    independent = unmerged_logps(tiny_base, str(adapter), pairs, "bfloat16", MAX_LENGTH).set_index("pair_id")
    padded = padded_unmerged_logps(tiny_base, str(adapter), pairs, "bfloat16", MAX_LENGTH).set_index("pair_id")
    n_tokens = {side: scored[16][f"n_tokens_{side}"] for side in ("chosen", "rejected")}
    sigma = max(bf16_layout_noise([(scored[16], scored[1]), (independent, padded)], n_tokens), 1e-4)
    merged = _merged_logps(tiny_base, adapter, pairs, "bfloat16").set_index("pair_id")
    worst_merged = 0.0
    for side in ("chosen", "rejected"):
        column, root_n = f"logp_{side}", np.sqrt(n_tokens[side])
        for size, frame in scored.items():
            scaled = ((frame[column] - independent[column]).abs() / root_n).to_numpy()
            assert scaled.max() <= 6 * sigma, (size, side, sigma, scaled.round(5))
        worst_merged = max(worst_merged, float(((merged[column] - independent[column]).abs() / root_n).max()))
    assert worst_merged > 6 * sigma, (worst_merged, sigma)  # the merged-in-bf16 path fails the same check


def test_fp32_scoring_equals_an_independent_unpadded_forward(tiny_base, lab_pairs, tmp_path):
    adapter = tmp_path / "adapter"
    _small_adapter(tiny_base, adapter)
    pairs = lab_pairs.assign(prompt_messages=None)
    model, tokenizer = load_policy(tiny_base, str(adapter), "float32")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    scored = logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 16).set_index("pair_id")
    expected = unmerged_logps(tiny_base, str(adapter), pairs, "float32", MAX_LENGTH).set_index("pair_id")
    errors = []
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(scored[side], expected.loc[scored.index, side], atol=1e-4, rtol=0)
        errors.append(float((scored[side] - expected.loc[scored.index, side]).abs().max()))
    # and the check can tell the adapter apart: the base alone is far further from the scores than the
    # independent forward of the adapted model is (the small update moves them by ~1e-4..1e-3 nats)
    base, _ = base_model.load_base(tiny_base, "float32")
    bare = logps.pair_logps(base, tokenizer, pairs, MAX_LENGTH, 16).set_index("pair_id")
    assert (bare["logp_chosen"] - scored["logp_chosen"]).abs().max() > 10 * max(errors)
