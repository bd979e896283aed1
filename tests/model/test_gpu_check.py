"""``benchmarks/gpu_check.py`` in its reduced CPU form: the command a GPU machine runs, at tiny sizes.

Three runs of the script as a user types it (a subprocess, ``--cpu``): a clean one (~1 minute on one
core), one with failures injected by ``--fail`` / ``--crash`` (~30 s), and one killed at a 3-second
budget. Plus the FLOPs and parameter formulas against published counts and a real PEFT model.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402

PARTS = ["real_study", "dpo_step_1b", "dpo_step_8b"]
TOP_KEYS = {"command", "mode", "device", "versions", "tolerance_nats", "budgets_s", "parts", "status", "seconds"}
PART_KEYS = {"status", "error", "seconds", "budget_s", "device_name"}
REAL_KEYS = PART_KEYS | {
    "model",
    "device",
    "train_dtype",
    "score_dtype",
    "fp32_matmul",
    "base_seconds",
    "stages",
    "scoring",
}
SCORING_KEYS = {
    "device",
    "reference_device",
    "tolerance_nats",
    "pairs",
    "max_abs_margin_diff_nats",
    "mean_abs_margin_diff_nats",
    "max_abs_logp_diff_nats",
    "seconds_device",
    "seconds_cpu",
}
STEP_KEYS = PART_KEYS | {
    "shape",
    "model",
    "reduced",
    "dtype",
    "batch_pairs",
    "prompt_tokens",
    "response_tokens",
    "steps",
    "warmup_steps",
    "lora_r",
    "estimated_memory_gib",
    "free_memory_gib",
    "free_disk_gib",
    "skipped",
    "parameters",
    "build_seconds",
    "matmul_parameters",
    "lora_parameters",
    "flops_formula",
    "tokens_per_step",
    "flops_per_step",
    "peak_flops",
    "peak_flops_source",
    "arms",
    "trl_vs_seqpref_step",
}
ARM_KEYS = {
    "step_seconds",
    "first_loss",
    "reference_seconds",
    "logged_step_seconds_unsynced",
    "timed_steps",
    "step_s",
    "tokens_per_s",
    "model_tflops_per_s",
    "mfu",
    "peak_memory_gib",
    "logged_step_s_unsynced",
    "attention",
    "error",
    "seconds",
}


def run_check(tmp_path: Path, *options: str) -> tuple[int, dict, str]:
    """Run the script's reduced form; returns (exit code, its JSON, its output)."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--cpu", "--out", str(out), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.exists(), done.stderr[-3000:]
    return done.returncode, json.loads(out.read_text()), done.stderr


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The reduced form, every part, nothing injected."""
    return run_check(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """The 1B part's seqpref arm raises, the real study raises after training and scoring its first stage
    on the device (before the CPU scoring), the 8B part's process dies hard at its TRL arm (after its
    seqpref arm)."""
    return run_check(
        tmp_path_factory.mktemp("injected"),
        "--parts",
        "dpo_step_1b,real_study,dpo_step_8b",
        "--fail",
        "dpo_step_1b/seqpref",
        "--fail",
        "real_study/cpu_scoring",
        "--crash",
        "dpo_step_8b/trl",
    )


def test_the_reduced_form_passes_and_writes_every_key(clean):
    code, report, stderr = clean
    assert code == 0, stderr[-3000:]
    assert set(report) == TOP_KEYS
    assert report["mode"] == "cpu-reduced" and report["status"] == "pass" and report["device"]["type"] == "cpu"
    assert list(report["parts"]) == PARTS
    for name in ("torch", "transformers", "trl", "peft"):
        assert report["versions"][name]
    real = report["parts"]["real_study"]
    assert set(real) == REAL_KEYS and set(real["scoring"]) == SCORING_KEYS
    for part in PARTS[1:]:
        assert set(report["parts"][part]) == STEP_KEYS
        assert set(report["parts"][part]["arms"]) == {"seqpref", "trl"}
        for arm in report["parts"][part]["arms"].values():
            assert set(arm) == ARM_KEYS
    assert all(report["parts"][p]["status"] == "pass" and report["parts"][p]["error"] is None for p in PARTS)


def test_scoring_twice_on_the_cpu_gives_identical_margins(clean):
    real = clean[1]["parts"]["real_study"]
    assert real["train_dtype"] == real["score_dtype"] == "float32" and real["device"] == "cpu"
    # two stages of the first setting (16 train pairs: 2 optimiser steps of 4 x 2), each scored on both objectives
    assert [(s["stage"], s["steps"], s["pairs"]) for s in real["stages"]] == [(1, 2, 16), (2, 2, 16)]
    assert all(s["adapter_change_norm"] > 0 for s in real["stages"])
    assert real["scoring"]["pairs"] == 2 * 2 * 8
    # the same fp32 code on the same device: not close, identical
    assert real["scoring"]["max_abs_margin_diff_nats"] == 0.0
    assert real["scoring"]["mean_abs_margin_diff_nats"] == 0.0
    assert real["scoring"]["max_abs_logp_diff_nats"] == 0.0
    assert real["scoring"]["tolerance_nats"] == gpu_check.TOLERANCE_NATS


def test_every_arm_reports_positive_throughput(clean):
    for part in PARTS[1:]:
        result = clean[1]["parts"][part]
        assert result["reduced"] is True and result["dtype"] == "float32"
        assert result["peak_flops"] is None and "none" in result["peak_flops_source"]
        assert result["tokens_per_step"] > 0 and result["flops_per_step"] > 0
        for name, arm in result["arms"].items():
            assert len(arm["step_seconds"]) == result["steps"], name
            assert arm["timed_steps"] == result["steps"] - result["warmup_steps"]
            assert math.isfinite(arm["tokens_per_s"]) and arm["tokens_per_s"] > 0
            assert arm["tokens_per_s"] == pytest.approx(result["tokens_per_step"] / arm["step_s"])
            assert arm["model_tflops_per_s"] == pytest.approx(result["flops_per_step"] / arm["step_s"] / 1e12)
            assert arm["mfu"] is None and arm["peak_memory_gib"] is None  # no GPU: no peak, no CUDA memory
            assert arm["first_loss"] == pytest.approx(math.log(2), abs=1e-4)  # the LoRA starts at zero
        assert result["trl_vs_seqpref_step"] == pytest.approx(
            result["arms"]["trl"]["step_s"] / result["arms"]["seqpref"]["step_s"]
        )
        assert result["arms"]["seqpref"]["reference_seconds"] > 0


def test_a_failing_part_keeps_the_other_parts_results(injected):
    code, report, stderr = injected
    assert code == 1 and report["status"] == "fail"
    parts = report["parts"]
    assert list(parts) == ["dpo_step_1b", "real_study", "dpo_step_8b"]

    one_b = parts["dpo_step_1b"]  # an arm raised: recorded there, the other arm measured
    assert one_b["status"] == "error" and one_b["error"]["type"] == "ArmFailed"
    assert one_b["arms"]["seqpref"]["error"]["type"] == "InjectedFailure"
    assert "--fail dpo_step_1b/seqpref" in one_b["arms"]["seqpref"]["error"]["message"]
    assert one_b["arms"]["trl"]["error"] is None and one_b["arms"]["trl"]["tokens_per_s"] > 0

    real = parts["real_study"]  # raised mid-way: its first stage's record is kept; the part after it still ran
    assert real["status"] == "error" and real["error"]["type"] == "InjectedFailure"
    assert "--fail real_study/cpu_scoring" in real["error"]["message"] and "Traceback" in real["error"]["traceback"]
    assert [s["stage"] for s in real["stages"]] == [1] and "scoring" not in real["stages"][0]
    assert real["stages"][0]["adapter_change_norm"] > 0 and real["scoring"]["pairs"] == 0

    eight_b = parts["dpo_step_8b"]  # its process died: what it had written survives
    assert eight_b["status"] == "error" and eight_b["error"]["type"] == "ProcessDied"
    assert f"exit code {gpu_check.CRASH_EXIT}" in eight_b["error"]["message"]
    assert eight_b["arms"]["seqpref"]["tokens_per_s"] > 0 and "trl" not in eight_b["arms"]


def test_a_part_over_its_budget_is_recorded_as_a_timeout(tmp_path):
    code, report, _ = run_check(tmp_path, "--parts", "dpo_step_1b", "--budget", "dpo_step_1b=3")
    part = report["parts"]["dpo_step_1b"]
    assert code == 1 and report["status"] == "fail"
    assert part["status"] == "timeout" and part["error"]["type"] == "Timeout" and part["budget_s"] == 3
    assert part["seconds"] < 30


def test_parameter_counts_match_the_published_models():
    # meta-llama's published totals include the RMSNorm weights: 2 per layer and a final one
    for shape, published in ((gpu_check.LLAMA_3_2_1B, 1_235_814_400), (gpu_check.LLAMA_3_1_8B, 8_030_261_248)):
        norms = (2 * shape["num_hidden_layers"] + 1) * shape["hidden_size"]
        assert gpu_check.model_parameters(shape) + norms == published
    assert gpu_check.lora_parameters(gpu_check.LLAMA_3_1_8B, 8) == 20_971_520  # PEFT's count, r=8 all-linear


def test_matmul_and_lora_counts_match_a_built_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from seqpref.options import LoraOptions

    shape = gpu_check.reduced_shape(gpu_check.LLAMA_3_1_8B)
    model = LlamaForCausalLM(LlamaConfig(**shape))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert gpu_check.matmul_parameters(shape) == linear  # every decoder projection and lm_head
    from peft import get_peft_model

    peft = get_peft_model(model, LoraOptions(r=4).peft_config())
    assert gpu_check.lora_parameters(shape, 4) == sum(p.numel() for p in peft.parameters() if p.requires_grad)


def test_sequence_flops_by_hand():
    shape = dict(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=10,
        tie_word_embeddings=False,
    )
    # per layer: q 8x8, k 8x4, v 8x4, o 8x8, gate/up/down 3 x 8x16; lm_head 8x10
    n = 2 * (64 + 32 + 32 + 64 + 3 * 128) + 80
    # r = 2: q (8+8), k (8+4), v (8+4), o (8+8), gate (8+16), up (8+16), down (16+8)
    n_lora = 2 * 2 * (16 + 12 + 12 + 16 + 24 + 24 + 24)
    assert gpu_check.matmul_parameters(shape) == n and gpu_check.lora_parameters(shape, 2) == n_lora
    assert gpu_check.sequence_flops(shape, 2, 5) == 4 * n * 5 + 6 * n_lora * 5 + 12 * 2 * 2 * 4 * 5**2


def test_peak_flops_by_device_name():
    assert gpu_check.peak_flops("NVIDIA H100 80GB HBM3")[0] == 989.5e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe")[0] == 756e12
    assert gpu_check.peak_flops("NVIDIA H200")[0] == 989.5e12
    assert gpu_check.peak_flops("NVIDIA H200 NVL")[0] == 835e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB")[0] == 312e12
    assert gpu_check.peak_flops("x86_64")[0] is None
    assert gpu_check.peak_flops("x86_64", 2.0) == (2e12, "--peak-tflops (given by the user)")


def test_the_8b_step_is_sized_for_an_80_gb_gpu():
    plan = gpu_check.CUDA_PLAN.steps["dpo_step_8b"]
    tokens = plan.batch_pairs * 2 * (plan.prompt_tokens + plan.response_tokens)
    assert gpu_check.training_memory_gib(plan.model, tokens, 8) < 60  # room left for TRL's reference forward
