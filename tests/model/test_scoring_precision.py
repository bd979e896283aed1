"""Scoring scores the trained model: in bf16 the adapter stays unmerged, because merging a small
LoRA update into bf16 weights rounds much of it away (score.py's docstring)."""

from __future__ import annotations

import numpy as np
import torch

from seqpref import base_model, logps, score


def _small_adapter(tiny_base, out_dir) -> None:
    """An adapter whose update is small next to the weights (|ΔW| ~ 1e-4 against weights ~ 0.1), as
    after a few DPO steps at a paper learning rate, saved as training saves it."""
    from peft import get_peft_model

    from seqpref import train

    model, _ = base_model.load_base(tiny_base, "float32")
    peft_model = get_peft_model(model, train.LoraOptions(r=4, alpha=8).peft_config())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(2e-4 * torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(out_dir)


def _unmerged_logps(tiny_base, adapter, pairs, dtype):
    """Policy log-probs from an independent unmerged forward: base in ``dtype`` + the adapter."""
    from peft import PeftModel

    model, tokenizer = base_model.load_base(tiny_base, dtype)
    model = PeftModel.from_pretrained(model, adapter).eval()
    return logps.pair_logps(model, tokenizer, pairs, 64, 16)


def _merged_logps(tiny_base, adapter, pairs, dtype):
    """What the scorer did before: the adapter merged into the base weights in ``dtype``."""
    from peft import PeftModel

    model, tokenizer = base_model.load_base(tiny_base, dtype)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    return logps.pair_logps(model, tokenizer, pairs, 64, 16)


def test_bf16_scorer_keeps_the_adapter_unmerged(tiny_base, lab_pairs, tmp_path):
    adapter = tmp_path / "adapter"
    _small_adapter(tiny_base, adapter)
    pairs = lab_pairs.assign(prompt_messages=None)
    model, tokenizer = score.load_policy(tiny_base, str(adapter), "bfloat16")
    scored = logps.pair_logps(model, tokenizer, pairs, 64, 16)
    assert any(p.dtype == torch.bfloat16 for p in model.parameters())
    assert not any(hasattr(m, "merged") and m.merged for m in model.modules())

    unmerged = _unmerged_logps(tiny_base, adapter, pairs, "bfloat16")
    merged = _merged_logps(tiny_base, adapter, pairs, "bfloat16")
    tolerance = 1e-3  # nats per response: the same computation, run twice
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(scored[side], unmerged[side], atol=tolerance, rtol=0)
        assert np.abs(merged[side] - unmerged[side]).max() > 10 * tolerance  # the merged-in-bf16 path fails it


def test_fp32_scoring_equals_the_unmerged_fp32_forward(tiny_base, lab_pairs, tmp_path):
    adapter = tmp_path / "adapter"
    _small_adapter(tiny_base, adapter)
    pairs = lab_pairs.assign(prompt_messages=None)
    model, tokenizer = score.load_policy(tiny_base, str(adapter), "float32")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    scored = logps.pair_logps(model, tokenizer, pairs, 64, 16)
    expected = _unmerged_logps(tiny_base, adapter, pairs, "float32")
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(scored[side], expected[side], atol=1e-5, rtol=0)
