"""The prompt once per pair (seqpref.prefix) is exact: the scorer's log-probs, and the training loss,
TRL's logged metrics and the gradient of a DPO micro-batch, equal the unshared computation in fp32 on
plain, chat-templated and truncated pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_chat_template import chat_base, chat_pairs  # noqa: F401 (fixtures)

from seqpref import base_model, dpo_trainer, logps, prefix
from seqpref.options import TrainOptions

TOLERANCE = 1e-5  # nats, on summed log-probs of up to ~150 tokens (fp32)


def test_pack_masks_and_positions_on_a_hand_built_pair():
    packed = prefix.pack([([5, 6, 7], [8, 9], [10])], pad_id=0, dtype=torch.bool)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 7, 10]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3]]
    assert packed.shift_labels.tolist() == [[-100, -100, 8, 9, -100, 10, -100]]
    allowed = packed.attention_mask[0, 0].int().tolist()
    assert allowed[5] == [1, 1, 0, 0, 0, 1, 0]  # p' sees prompt[:-1] and itself, not p or the chosen tokens
    assert allowed[6] == [1, 1, 0, 0, 0, 1, 1]  # a rejected token likewise, and p'
    assert allowed[4] == [1, 1, 1, 1, 1, 0, 0]  # a chosen token: the whole prompt and the chosen before it
    with pytest.raises(ValueError, match="non-empty"):
        prefix.pack([([], [1], [2])], pad_id=0)


@pytest.mark.parametrize("max_length", [None, 40])
def test_shared_scoring_equals_unshared_on_lab_pairs(tiny_base, lab_pairs, max_length):
    model, tokenizer = base_model.load_base(tiny_base)
    unshared = logps.pair_logps(model, tokenizer, lab_pairs, max_length, 8, share_prompt=False)
    shared = logps.pair_logps(model, tokenizer, lab_pairs, max_length, 8, share_prompt=True)
    assert (max_length is None) == (not unshared["truncated"].any())
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(shared[side], unshared[side], rtol=0, atol=TOLERANCE)
    pd.testing.assert_frame_equal(
        shared.drop(columns=["logp_chosen", "logp_rejected"]), unshared.drop(columns=["logp_chosen", "logp_rejected"])
    )


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_scoring_equals_unshared_on_chat_templated_pairs(chat_base, chat_pairs, attention):  # noqa: F811
    model, tokenizer = base_model.load_base(chat_base, "float32", attention)
    unshared = logps.pair_logps(model, tokenizer, chat_pairs, None, 4, share_prompt=False)
    shared = logps.pair_logps(model, tokenizer, chat_pairs, None, 4, share_prompt=True)
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(shared[side], unshared[side], rtol=0, atol=TOLERANCE)


def _sliding_model(kind: str):
    """A random tiny causal LM whose attention slides over 6 tokens: Gemma 3's mix of sliding and full
    layers (one mask per layer type), or Mistral's every-layer window (one sliding mask)."""
    import transformers

    torch.manual_seed(0)
    common = dict(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=6,
    )
    if kind == "gemma3":
        config = transformers.Gemma3TextConfig(
            **common, num_hidden_layers=2, head_dim=8, layer_types=["sliding_attention", "full_attention"]
        )
        model = transformers.Gemma3ForCausalLM(config)
    else:
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**common, num_hidden_layers=1))
    return model.eval()


@pytest.mark.parametrize("kind", ["gemma3", "mistral"])
def test_shared_scoring_keeps_a_sliding_window(tiny_base, lab_pairs, kind):
    """transformers uses a ready-made 4-D mask as it is, so a sliding layer's window must be in the
    packed mask (by position id): pairs several windows long score as unshared, per layer type."""
    model, tokenizer = _sliding_model(kind), base_model.load_base(tiny_base)[1]
    window, per_layer_type = prefix.attention_layout(model)
    assert window == 6 and per_layer_type == (kind == "gemma3")
    assert (
        min(len(t.prompt_ids) + len(t.chosen_ids) for t in logps.tokenize_frame(tokenizer, lab_pairs, None))
        > 2 * window
    )
    unshared = logps.pair_logps(model, tokenizer, lab_pairs, None, 8, share_prompt=False)
    shared = logps.pair_logps(model, tokenizer, lab_pairs, None, 8, share_prompt=True)
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(shared[side], unshared[side], rtol=0, atol=TOLERANCE)


def test_a_kernel_without_custom_masks_scores_unshared(tiny_base, lab_pairs):
    """Flash attention takes no custom mask: share_prompt then runs the pairs unshared instead of failing."""
    model, tokenizer = base_model.load_base(tiny_base)
    assert prefix.takes_custom_mask(model)
    unshared = logps.pair_logps(model, tokenizer, lab_pairs, None, 8, share_prompt=False)
    model.config._attn_implementation = "flash_attention_2"  # what a CUDA load with flash-attn gives
    assert not prefix.takes_custom_mask(model)
    with pytest.raises(ValueError, match="sdpa or eager"):
        prefix.mask_dtype(model)
    model.config._attn_implementation = "sdpa"  # the kernel that runs here; the decision was taken above
    original = prefix.takes_custom_mask
    try:
        prefix.takes_custom_mask = lambda m: False
        shared = logps.pair_logps(model, tokenizer, lab_pairs, None, 8, share_prompt=True)
    finally:
        prefix.takes_custom_mask = original
    pd.testing.assert_frame_equal(shared, unshared)


def _trainer(tiny_base, pair_files, tmp_path, share_prompt, max_length=64):
    options = TrainOptions(
        beta=0.1,
        learning_rate=3e-3,
        batch_size=8,
        max_length=max_length,
        lora={"r": 4, "alpha": 8},
        share_prompt=share_prompt,
    )
    model, tokenizer = base_model.load_base(tiny_base)
    dataset = dpo_trainer.training_dataset(
        pd.read_parquet(pair_files["pairs"]), pd.read_parquet(pair_files["base_logps"]), tokenizer
    )
    run = {"setting": "lab", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1}
    trainer = dpo_trainer.trainer_class()(
        model=model,
        args=dpo_trainer.dpo_config(options, run, str(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        share_prompt=share_prompt,
    )
    with torch.no_grad():  # a non-zero adapter, the same in both trainers: the loss depends on it
        generator = torch.Generator().manual_seed(0)
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return trainer


@pytest.mark.parametrize("max_length", [64, 40])  # 40 truncates the responses
def test_shared_training_loss_metrics_and_gradient_equal_unshared(tiny_base, pair_files, tmp_path, max_length):
    results = {}
    for share in (False, True):
        trainer = _trainer(tiny_base, pair_files, tmp_path / str(share), share, max_length)
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]
        metrics = {k: v[-1] for k, v in trainer.pending_metrics().items()}
        results[share] = loss.item(), grads, metrics
    (loss_a, grads_a, metrics_a), (loss_b, grads_b, metrics_b) = results[False], results[True]
    assert loss_b == pytest.approx(loss_a, abs=1e-6)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)
    assert metrics_a.keys() == metrics_b.keys() and "rewards/margins" in metrics_a and "entropy" in metrics_a
    for key in metrics_a:
        if key != "num_tokens":  # TRL counts the attention mask of its own rows
            assert metrics_b[key] == pytest.approx(metrics_a[key], rel=1e-4, abs=1e-6), key


def test_a_batch_whose_rows_do_not_share_a_prompt_runs_unshared():
    inputs = {
        "input_ids": torch.tensor([[1, 2, 3, 0], [1, 9, 3, 4]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
        "completion_mask": torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1]]),
    }
    assert prefix.pairs_of_trl_batch(inputs) is None
    inputs["input_ids"][1, 1] = 2
    assert prefix.pairs_of_trl_batch(inputs) == [([1, 2], [3], [3, 4])]
