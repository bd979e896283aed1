"""The scorer, the training reference and the saved adapter, checked against TRL and PEFT themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from seqpref import base_model, logps, score, tables, tokenization, train
from seqpref.lora import check_saved_adapter, load_policy
from seqpref.options import LabModelOptions, TrainOptions

RUN = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0}


def _trl_reference(tiny_base, pairs: pd.DataFrame, max_length: int):
    """TRL's own precomputed reference log-probs (plain DPOTrainer, the model as its reference)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = base_model.load_base(tiny_base)
    config = DPOConfig(
        output_dir=str(Path(tiny_base) / "trl"),
        precompute_ref_log_probs=True,
        max_length=max_length,
        per_device_train_batch_size=7,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        bf16=False,  # TRL 1.16 defaults to bf16 autocast, also on CPU; our training runs fp32 on CPU
    )
    dataset = Dataset.from_pandas(pairs[["prompt", "chosen", "rejected"]], preserve_index=False)
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    return trainer.train_dataset, model, tokenizer


@pytest.mark.parametrize("truncate", [False, True])
def test_scorer_matches_trl_reference_logps(tiny_base, lab_pairs, truncate):
    _, tokenizer = base_model.load_base(tiny_base)
    longest_prompt = max(len(tokenizer(p)["input_ids"]) for p in lab_pairs["prompt"])
    max_length = longest_prompt + 3 if truncate else 128  # +3: every response is cut, no prompt is
    trl_data, model, tokenizer = _trl_reference(tiny_base, lab_pairs, max_length)
    ours = logps.pair_logps(model, tokenizer, lab_pairs, max_length=max_length, batch_size=5)
    assert len(ours) == len(trl_data) == len(lab_pairs)
    np.testing.assert_allclose(ours["logp_chosen"], trl_data["ref_chosen_logps"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours["logp_rejected"], trl_data["ref_rejected_logps"], atol=1e-4, rtol=0)
    assert bool(ours["truncated"].all()) is truncate and bool(ours["truncated"].any()) is truncate


def test_tokenization_matches_trl_token_ids(tiny_base, lab_pairs):
    trl_data, _, tokenizer = _trl_reference(tiny_base, lab_pairs, 128)
    for row, example in zip(lab_pairs.itertuples(), trl_data):
        ours = tokenization.tokenize_pair(tokenizer, row.prompt, row.chosen, row.rejected, max_length=None)
        assert ours.prompt_ids == example["prompt_ids"]
        assert ours.chosen_ids == example["chosen_ids"]
        assert ours.rejected_ids == example["rejected_ids"]
        assert ours.chosen_ids[-1] == tokenizer.eos_token_id  # the EOS training appends is scored


OPTIONS = dict(beta=0.1, learning_rate=3e-3, epochs=1, batch_size=48, max_length=64, lora={"r": 4, "alpha": 8})


@pytest.fixture(scope="module")
def two_stages(tiny_base, pair_files, tmp_path_factory):
    """Stage 1 and stage 2 adapters trained on the same pairs, one optimiser step each (whole batch)."""
    out = tmp_path_factory.mktemp("runs")
    summaries = {}
    previous = None
    for stage in (1, 2):
        summaries[stage] = train.train_stage(
            tiny_base,
            pair_files["pairs"],
            pair_files["base_logps"],
            str(out / f"stage{stage}"),
            str(out / f"log{stage}.parquet"),
            TrainOptions(**OPTIONS),
            {**RUN, "stage": stage, "objective": "comply"},
            previous,
        )
        previous = str(out / f"stage{stage}")
    return out, summaries


def test_a_stage_logs_its_budget(tiny_base, pair_files, two_stages):
    """One optimiser step over all 48 pairs: 48 pairs, and the tokens of their prompt + chosen and prompt +
    rejected sequences as the scorer's tokenizer (TRL's, tested above) cuts them to max_length."""
    out, _ = two_stages
    log = pd.read_parquet(out / "log2.parquet")
    spent = dict(zip(log["metric"], log["value"]))
    _, tokenizer = base_model.load_base(tiny_base)
    tokenized = logps.tokenize_frame(tokenizer, pd.read_parquet(pair_files["pairs"]), OPTIONS["max_length"])
    tokens = sum(2 * len(t.prompt_ids) + len(t.chosen_ids) + len(t.rejected_ids) for t in tokenized)
    assert (spent["budget/pairs"], spent["budget/optimizer_steps"], spent["budget/tokens"]) == (48, 1, tokens)


def test_stage2_training_reference_is_the_base(tiny_base, pair_files, two_stages):
    """At stage 2's first step the policy is stage 1's model. With the base as reference, TRL's logged
    rewards/chosen is β·mean(logp_stage1 − logp_base) over the batch (the whole set here); with a
    reference copied from stage 1 it would be exactly 0."""
    out, _ = two_stages
    log = pd.read_parquet(out / "log2.parquet")
    first = log[log["step"] == log["step"].min()].set_index("metric")["value"]
    pairs = pd.read_parquet(pair_files["pairs"])
    base = pd.read_parquet(pair_files["base_logps"]).set_index("pair_id").loc[pairs["pair_id"]]
    model, tokenizer = load_policy(tiny_base, str(out / "stage1"))
    stage1 = logps.pair_logps(model, tokenizer, pairs, 64, 16).set_index("pair_id").loc[pairs["pair_id"]]
    expected_chosen = 0.1 * (stage1["logp_chosen"] - base["logp_chosen"]).mean()
    expected_rejected = 0.1 * (stage1["logp_rejected"] - base["logp_rejected"]).mean()
    assert abs(expected_chosen) > 1e-3  # stage 1 moved away from the base, so the check can tell
    assert first["rewards/chosen"] == pytest.approx(expected_chosen, abs=2e-4)
    assert first["rewards/rejected"] == pytest.approx(expected_rejected, abs=2e-4)


def test_a_previous_reference_sham_starts_every_pair_at_margin_zero(tiny_base, pair_files, two_stages, tmp_path):
    """controls.sham_design previous_reference: the sham's reference is the stage k−1 model's log-probs of
    its half-swapped pairs (``python -m seqpref.logps --adapter``, the sham_reference rule), so at its first
    step every pair's implicit reward margin is 0 (against the base it would be stage 1's learnt margin)."""
    from seqpref import controls

    out, _ = two_stages
    sham_pairs, sham_base, _ = controls.sham_pairs(
        pd.read_parquet(pair_files["pairs"]), pd.read_parquet(pair_files["base_logps"]), seed=0
    )
    tables.write_table(sham_pairs, tmp_path / "sham.parquet", tables.PAIRS, {"test": True})
    options = json.dumps({"max_length": 64, "batch_size": 16, "dtype": "float32", "share_prompt": False})
    logps.main(
        [
            tiny_base,
            str(tmp_path / "sham.parquet"),
            str(tmp_path / "reference.parquet"),
            "--options",
            options,
            "--adapter",
            str(out / "stage1"),
        ]
    )
    reference = pd.read_parquet(tmp_path / "reference.parquet").set_index("pair_id").loc[sham_pairs["pair_id"]]
    base = sham_base.set_index("pair_id").loc[sham_pairs["pair_id"]]
    assert (reference["logp_chosen"] - base["logp_chosen"]).abs().max() > 1e-3  # stage 1's model, not the base
    train.train_stage(
        tiny_base,
        str(tmp_path / "sham.parquet"),
        str(tmp_path / "reference.parquet"),
        str(tmp_path / "sham2"),
        str(tmp_path / "sham_log.parquet"),
        TrainOptions(**OPTIONS),
        {**RUN, "stage": 2, "objective": "comply"},
        str(out / "stage1"),
    )
    log = pd.read_parquet(tmp_path / "sham_log.parquet")
    first = log[log["step"] == log["step"].min()].set_index("metric")["value"]
    stage2 = pd.read_parquet(out / "log2.parquet")
    learnt = stage2[stage2["step"] == stage2["step"].min()].set_index("metric")["value"]
    # against the base, stage 2 starts at stage 1's rewards; against stage 1, the sham starts at 0
    assert abs(learnt["rewards/chosen"]) > 1e-3 and abs(learnt["rewards/rejected"]) > 1e-3
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert abs(first[key]) < 1e-5, key


def test_stage2_evaluation_reference_is_the_base(tiny_base, pair_files, two_stages):
    out, _ = two_stages
    run = {**RUN, "stage": 2, "trained_objective": "comply"}
    options = {"beta": 0.1, "max_length": 64, "batch_size": 16, "dtype": "auto", "attn_implementation": None}
    frame = score.score_stage(
        run, [("comply", pair_files["pairs"], pair_files["base_logps"])], options, tiny_base, str(out / "stage2")
    )
    model, tokenizer = base_model.load_base(tiny_base)
    fresh = logps.pair_logps(model, tokenizer, pd.read_parquet(pair_files["pairs"]), 64, 16)
    merged = frame.merge(fresh, on="pair_id", suffixes=("", "_base"))
    np.testing.assert_allclose(merged["ref_logp_chosen"], merged["logp_chosen_base"], atol=1e-5)
    np.testing.assert_allclose(merged["ref_logp_rejected"], merged["logp_rejected_base"], atol=1e-5)
    # and the policy side is the stage-2 model, not the base
    assert (merged["logp_chosen"] - merged["ref_logp_chosen"]).abs().max() > 1e-3


def test_adapter_has_trainable_parameters_and_they_change(tiny_base, two_stages):
    out, summaries = two_stages
    config = json.loads(Path(tiny_base, "config.json").read_text())
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    r = OPTIONS["lora"]["r"]
    # all-linear: q, k, v, o, gate, up, down of every layer (lm_head excluded)
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]
    expected = layers * sum(r * (i + o) for i, o in shapes)
    for stage in (1, 2):
        assert summaries[stage]["trainable_parameters"] == expected
        assert summaries[stage]["adapter_change_norm"] > 0
    assert summaries[2]["tensors_loaded_from_previous"] == 2 * 7 * layers
    w1, w2 = (
        load_file(str(out / "stage1/adapter_model.safetensors")),
        load_file(str(out / "stage2/adapter_model.safetensors")),
    )
    assert any(float(t.abs().max()) > 0 for k, t in w1.items() if "lora_B" in k)  # B starts at 0
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


def test_saved_adapter_holds_only_the_trained_adapter(two_stages):
    out, _ = two_stages
    for stage in (1, 2):
        directory = out / f"stage{stage}"
        assert not [p for p in directory.iterdir() if p.is_dir()]  # no "ref/" sub-adapter
        weights = load_file(str(directory / "adapter_model.safetensors"))
        assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
        assert not any(".ref." in k or "ref" in k.split(".") for k in weights)
        assert json.loads((directory / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_check_saved_adapter_rejects_a_sub_adapter(two_stages, tmp_path):
    out, _ = two_stages
    import shutil

    copy = tmp_path / "adapter"
    shutil.copytree(out / "stage1", copy)
    shutil.copytree(out / "stage1", copy / "ref")
    expected = load_file(str(copy / "adapter_model.safetensors"))
    with pytest.raises(RuntimeError, match="sub-adapters"):
        check_saved_adapter(copy, expected)


def test_lab_base_model_same_seed_same_bytes(tmp_path):
    """The build_base_model rule is reproducible: the same options give byte-identical files."""
    options = LabModelOptions(
        vocab_size=200,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        corpus_size=100,
        steps=5,
        batch_size=8,
    )
    for name in ("a", "b"):
        base_model.build_lab_base(tmp_path / name, options)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = LabModelOptions(**{**options.__dict__, "seed": 1})
    base_model.build_lab_base(tmp_path / "c", other)
    assert (tmp_path / "c/model.safetensors").read_bytes() != (tmp_path / "a/model.safetensors").read_bytes()
