"""The continual-learning baselines on the tiny lab model: a merge equals PEFT's own merge of the same
adapters (and ``cat`` is exact task arithmetic), and a replay stage keeps the DPO stage's budget while
its earlier pairs change what it learns."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from seqpref import base_model, lab, logps, methods, tables, train
from seqpref.lora import load_policy
from seqpref.methods import merge
from seqpref.options import TrainOptions

OPTIONS = dict(beta=0.1, learning_rate=3e-3, batch_size=8, max_length=64, lora={"r": 4, "alpha": 8})


def _peft_merge(tiny_base, adapters, weights, options):
    """PEFT's own merge, written as its documentation shows: load, add_weighted_adapter, set_adapter."""
    from peft import PeftModel

    model, _ = base_model.load_base(tiny_base, "float32")
    model = PeftModel.from_pretrained(model, adapters[0], adapter_name="first")
    model.load_adapter(adapters[1], adapter_name="second")
    model.add_weighted_adapter(
        ["first", "second"], weights, "merged", combination_type=options.combination, density=options.density
    )
    model.set_adapter("merged")
    return model.eval()


@pytest.mark.parametrize("combination, density", [("cat", None), ("linear", None), ("ties_svd", 0.5)])
def test_merged_adapter_equals_pefts_own_merge(combination, density, tiny_base, two_stages_for_movement, tmp_path):
    adapters = [str(two_stages_for_movement / "stage1"), str(two_stages_for_movement / "stage2")]
    options = merge.MergeOptions(combination=combination, density=density)
    weights = [0.3, 0.7]
    merge.build(tiny_base, adapters, weights, options, str(tmp_path / "merged"))
    ours, tokenizer = load_policy(tiny_base, str(tmp_path / "merged"))
    theirs = _peft_merge(tiny_base, adapters, weights, options)
    ids = tokenizer("Please help me with the garden today.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, theirs(input_ids=ids).logits, rtol=0, atol=1e-6)
        plain = base_model.load_base(tiny_base, "float32")[0](input_ids=ids).logits
    assert (ours(input_ids=ids).logits - plain).abs().max() > 1e-4  # the merge is not a no-op
    saved = load_file(str(tmp_path / "merged/adapter_model.safetensors"))
    assert saved and all(".default." not in k and ".first." not in k for k in saved)  # only the merge is saved


def test_cat_merge_is_the_weighted_sum_of_the_updates(tiny_base, two_stages_for_movement, tmp_path):
    """ΔW of the merged adapter equals 0.3·ΔW₁ + 0.7·ΔW₂ in every adapted module (task arithmetic)."""
    adapters = [str(two_stages_for_movement / "stage1"), str(two_stages_for_movement / "stage2")]
    merge.build(tiny_base, adapters, [0.3, 0.7], merge.MergeOptions(), str(tmp_path / "merged"))
    merged, _ = load_policy(tiny_base, str(tmp_path / "merged"))
    singles = [load_policy(tiny_base, a)[0] for a in adapters]

    def deltas(model):
        from peft.tuners.lora import LoraLayer

        return {n: m.get_delta_weight("default") for n, m in model.named_modules() if isinstance(m, LoraLayer)}

    got, one, two = deltas(merged), deltas(singles[0]), deltas(singles[1])
    assert got.keys() == one.keys() and len(got) > 0
    for name in got:
        torch.testing.assert_close(got[name], 0.3 * one[name] + 0.7 * two[name], rtol=1e-5, atol=1e-7)


def test_stage_one_of_a_merge_is_the_single_objective_adapter(tiny_base, two_stages_for_movement, tmp_path):
    adapter = str(two_stages_for_movement / "stage1")
    merge.build(
        tiny_base, [adapter], merge.stage_weights(merge.MergeOptions(), 1), merge.MergeOptions(), str(tmp_path / "m1")
    )
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        torch.testing.assert_close(
            load_policy(tiny_base, str(tmp_path / "m1"))[0](input_ids=ids).logits,
            load_policy(tiny_base, adapter)[0](input_ids=ids).logits,
            rtol=0,
            atol=1e-6,
        )


@pytest.mark.parametrize("combination", ["ties_svd", "dare_ties"])
def test_a_front_end_is_the_single_adapter_whatever_the_combination(
    combination, tiny_base, two_stages_for_movement, tmp_path
):
    """λ = 1 gives the second adapter weight 0: it must take no part (TIES would otherwise elect signs
    and prune with it, and average it in), so the point is the first adapter alone; and a DARE merge is
    the same in two processes' worth of draws (seeded)."""
    adapters = [str(two_stages_for_movement / "stage1"), str(two_stages_for_movement / "stage2")]
    options = merge.MergeOptions(combination=combination, density=0.5)
    merge.build(
        tiny_base,
        adapters,
        merge.front_weights(options, options.lambdas.index(1.0)),
        options,
        str(tmp_path / "end"),
        {"run": {"seed": 3}},
    )
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        torch.testing.assert_close(
            load_policy(tiny_base, str(tmp_path / "end"))[0](input_ids=ids).logits,
            load_policy(tiny_base, adapters[0])[0](input_ids=ids).logits,
            rtol=0,
            atol=1e-6,
        )
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 1000 + ord(name))  # a different global generator state each time
        merge.build(tiny_base, adapters, [0.5, 0.5], options, str(tmp_path / name), {"run": {"seed": 3}})
    assert (tmp_path / "a/adapter_model.safetensors").read_bytes() == (
        tmp_path / "b/adapter_model.safetensors"
    ).read_bytes()


@pytest.fixture(scope="module")
def warm_files(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("warm")
    model, tokenizer = base_model.load_base(tiny_base)
    pairs = lab.make_pairs(lab.LabObjective(prefer={"closer": "warm"}), 32, seed=5, id_prefix="w")
    tables.write_table(pairs, out / "pairs.parquet", tables.PAIRS, {"test": True})
    tables.write_table(
        logps.pair_logps(model, tokenizer, pairs, 64, 16), out / "logps.parquet", tables.LOGPS, {"test": True}
    )
    return str(out / "pairs.parquet"), str(out / "logps.parquet")


def test_replay_stage_keeps_the_dpo_budget_and_learns_from_the_earlier_pairs(
    tiny_base, pair_files, warm_files, two_stages_for_movement, tmp_path
):
    options = TrainOptions(**OPTIONS)
    run = {"setting": "lab", "method": "replay", "order": "comply-warm", "seed": 0, "stage": 2, "objective": "warm"}
    earlier = [("comply", 1, pair_files["pairs"], pair_files["base_logps"])]
    previous = str(two_stages_for_movement / "stage1")
    bytes_of = {}
    for share in (0.0, 0.5):
        out = tmp_path / f"share{share}"
        summary = train.train_stage(
            tiny_base,
            *warm_files,
            str(out),
            str(tmp_path / f"log{share}.parquet"),
            options,
            run,
            previous,
            earlier,
            method_options=methods.options("replay", share=share),
        )
        assert summary["steps"] == train.stage_steps(32, 8)  # the DPO stage's steps on the stage's own 32 pairs
        assert summary["pairs"] == 32 + 48  # its own and the earlier objective's, one dataset
        recorded = pd.read_json(out / "training_options.json", typ="series")
        assert recorded["options"]["method_options"] == {"share": share}
        bytes_of[share] = (out / "adapter_model.safetensors").read_bytes()
    assert bytes_of[0.0] != bytes_of[0.5]  # half of every batch from comply changes the stage
