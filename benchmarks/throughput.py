"""Training and scoring tokens per second of a Llama-shaped model built from a config (no hub).

    python benchmarks/throughput.py [--size 1b|tiny] [--pairs 256] [--prompt-tokens 128]
                                    [--response-tokens 256] [--batch-size 8] [--score-batch-size 16]

``--size 1b`` is a ~1.1B-parameter Llama (hidden 2048, 22 layers, 32 query / 4 key-value heads, MLP
5632, vocabulary 32000); ``tiny`` (hidden 256, 4 layers) checks the script on a CPU. The model is
saved with a byte-level BPE tokenizer trained here, then the workflow's own code runs on it:
``seqpref.logps.pair_logps`` (scoring: one forward pass over chosen and rejected of every pair, as
``base_logps`` and ``score_stage`` do) and ``seqpref.train.train_stage`` (one DPO stage: LoRA r=32 on
every linear layer, bf16 autocast on CUDA, activation checkpointing with ``--checkpointing``).

Tokens are prompt + response tokens of both sequences of every pair (what the forward passes see,
padding excluded). Scoring runs twice, the second timed; training is timed from the trainer's
per-step wall clock, steps ≥ 2. Prints the device, dtype, attention kernel and tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqpref import base_model, logps, tables, train
from seqpref.options import TrainOptions

SIZES = {
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
    ),
    "tiny": dict(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=4096,
    ),
}
WORDS = [f"w{i}" for i in range(400)]


def build(size: str, out: Path) -> int:
    """Save a randomly initialised Llama of ``size`` and a tokenizer to ``out``; returns parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = base_model.train_tokenizer([" ".join(WORDS)] * 20, vocab_size=1000)
    config = LlamaConfig(
        **SIZES[size],
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def synthetic_pairs(tokenizer, n: int, prompt_tokens: int, response_tokens: int) -> pd.DataFrame:
    """``n`` pairs of random words cut to about the requested token counts (PAIRS columns)."""
    rng = np.random.default_rng(0)

    def text(tokens):
        ids = tokenizer(" " + " ".join(rng.choice(WORDS, size=tokens)), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:tokens])

    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "prompt": [text(prompt_tokens) for _ in range(n)],
            "prompt_messages": None,
            "chosen": [text(response_tokens) for _ in range(n)],
            "rejected": [text(response_tokens) for _ in range(n)],
            "source": "{}",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--response-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-batch-size", type=int, default=16)
    parser.add_argument("--checkpointing", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seqpref-throughput-"))
    parameters = build(args.size, work / "base")
    model, tokenizer = base_model.load_base(str(work / "base"))
    pairs = synthetic_pairs(tokenizer, args.pairs, args.prompt_tokens, args.response_tokens)
    tokenized = logps.tokenize_frame(tokenizer, pairs, None)
    tokens = sum(2 * len(t.prompt_ids) + len(t.chosen_ids) + len(t.rejected_ids) for t in tokenized)
    max_length = max(len(t.prompt_ids) + max(len(t.chosen_ids), len(t.rejected_ids)) for t in tokenized)

    logps.pair_logps(model, tokenizer, pairs, max_length, args.score_batch_size)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    base = logps.pair_logps(model, tokenizer, pairs, max_length, args.score_batch_size)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    score_seconds = time.perf_counter() - start
    tables.write_table(pairs, work / "pairs.parquet", tables.PAIRS, {})
    tables.write_table(base, work / "logps.parquet", tables.LOGPS, {})
    attention = model.config._attn_implementation
    dtype = next(model.parameters()).dtype
    del model
    options = TrainOptions(
        beta=0.3,
        learning_rate=5e-5,
        batch_size=args.batch_size,
        max_length=max_length,
        activation_checkpointing=args.checkpointing,
        lora={"r": 32, "alpha": 64, "target_modules": "all-linear"},
    )
    run = {"setting": "bench", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "a"}
    train.train_stage(
        str(work / "base"),
        str(work / "pairs.parquet"),
        str(work / "logps.parquet"),
        str(work / "stage1"),
        str(work / "log.parquet"),
        options,
        run,
    )
    log = pd.read_parquet(work / "log.parquet")
    step_seconds = log[(log["metric"] == "step_seconds") & (log["step"] >= 2)]["value"]
    train_tokens_per_step = tokens / len(pairs) * args.batch_size
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(
        f"{args.size}: {parameters / 1e6:.0f}M parameters on {device}, {dtype}, attention {attention}; "
        f"{args.pairs} pairs, {tokens / len(pairs):.0f} tokens per pair (prompt twice + both responses)"
    )
    print(f"  scoring  {tokens / score_seconds:10.0f} tokens/s  (batch {args.score_batch_size}, {score_seconds:.2f} s)")
    print(
        f"  training {train_tokens_per_step / statistics.median(step_seconds):10.0f} tokens/s  "
        f"(batch {args.batch_size}, median of {len(step_seconds)} steps, {statistics.median(step_seconds):.3f} s/step,"
        f" checkpointing {args.checkpointing})"
    )


if __name__ == "__main__":
    main()
