"""LoRA helpers and adapter I/O: switching LoRA dropout, copying a saved adapter into a model, checking
a saved adapter, and loading a base model with an adapter attached for scoring.

A leaf of the package: it imports torch, PEFT and :mod:`seqpref.base_model`, and nothing that trains.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from seqpref.options import LoraOptions


def lora_dropouts(peft_model) -> list[tuple[str, torch.nn.Dropout]]:
    """``(adapter name, nn.Dropout)`` of every LoRA layer's dropout (PEFT uses nn.Identity for p = 0,
    which has nothing to set)."""
    return [
        (adapter, dropout)
        for module in peft_model.modules()
        if isinstance(getattr(module, "lora_dropout", None), torch.nn.ModuleDict)
        for adapter, dropout in module.lora_dropout.items()
        if isinstance(dropout, torch.nn.Dropout)
    ]


def restore_lora_dropout(peft_model) -> int:
    """Set every LoRA dropout back to its adapter's configured ``lora_dropout``; returns modules set.

    TRL's ``disable_dropout=True`` (its default, which we keep so that the base model's own dropout
    stays off, as in the precomputed reference) zeroes every ``nn.Dropout`` after ``get_peft_model``,
    LoRA's included, so ``train.lora.dropout`` would be recorded but never applied.
    """
    dropouts = lora_dropouts(peft_model)
    for adapter, dropout in dropouts:
        dropout.p = peft_model.peft_config[adapter].lora_dropout
    return len(dropouts)


@contextlib.contextmanager
def lora_dropout_off(peft_model):
    """Within the block, every LoRA dropout has p = 0; the configured values come back after.

    For passes that update nothing and must be deterministic: SPO's look-ahead and penalty forwards
    (with dropout on, θ̃'s and θ's forwards would draw different masks and the ReLU of that noise
    would be a positive penalty even at η = 0), the gradient probes and MAXRIGHT's gap re-evaluation.
    A dropout with p = 0 draws no random numbers, so these passes leave the training run's RNG stream
    as it would be without them.
    """
    dropouts = [dropout for _, dropout in lora_dropouts(peft_model)]
    saved = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(dropouts, saved):
            m.p = p


def load_adapter_weights(peft_model, adapter_dir: str | os.PathLike, lora: LoraOptions) -> int:
    """Copy a saved adapter's weights into ``peft_model``'s "default" adapter; returns tensors loaded.

    The saved adapter must have the same rank, α and targets as ``lora``; every saved tensor must
    land (``ValueError`` otherwise), so a stage never silently starts from a fresh adapter.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    for key, want in (("r", lora.r), ("lora_alpha", lora.alpha)):
        if saved[key] != want:
            raise ValueError(f"{adapter_dir}: saved adapter has {key}={saved[key]}, this stage uses {want}")
    weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, weights, adapter_name="default")
    if result.unexpected_keys:
        raise ValueError(f"{adapter_dir}: tensors that match no module: {result.unexpected_keys[:5]}")
    return len(weights)


def adapter_state(peft_model) -> dict[str, torch.Tensor]:
    """Detached copies of the "default" adapter's trainable tensors, by parameter name."""
    return {n: p.detach().clone().cpu() for n, p in peft_model.named_parameters() if p.requires_grad}


def check_saved_adapter(adapter_dir: str | os.PathLike, expected: dict[str, torch.Tensor]) -> None:
    """Fail unless ``adapter_dir`` holds exactly the trained adapter: its tensors, no sub-adapters."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    extra_dirs = [p.name for p in adapter_dir.iterdir() if p.is_dir()]
    if extra_dirs:
        raise RuntimeError(f"{adapter_dir}: unexpected sub-adapters {extra_dirs}")
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    if len(saved) != len(expected):
        raise RuntimeError(f"{adapter_dir}: {len(saved)} tensors saved, {len(expected)} trained")


def load_policy(base: str, adapter_dir: str, dtype: str = "float32", attn_implementation: str | None = None):
    """The base model in ``dtype`` with the adapter in ``adapter_dir`` attached, not merged; returns
    ``(model, tokenizer)`` in eval mode (LoRA dropout off). Never merge into low-precision weights:
    see the module docstring."""
    from peft import PeftModel

    from seqpref.base_model import load_base

    model, tokenizer = load_base(base, dtype, attn_implementation)
    model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    model.eval()
    return model, tokenizer
