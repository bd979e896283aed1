"""Cost of the data report's token lengths: prepare_data on hh-rlhf-shaped rows, with and without
the tokenizer, in one run.

    python benchmarks/prepare_data.py [--rows 20000] [--train-size 5000] [--eval-size 500] [--repeats 3]

Writes ``--rows`` synthetic rows with hh-rlhf's exact columns (``chosen`` / ``rejected``
transcripts, one to four turns, some long enough to exceed ``max_length``) to a JSONL file, then runs
``seqpref.data.prepare`` with the ``hh_rlhf`` source and a sibling objective, alternately:

- ``no tokenizer``: normalise, validate, split by prompt, sample (no lengths, no over-length drops);
- ``chat template``: the same plus token lengths of every kept pair and the over-length check, with
  a byte-level BPE tokenizer (trained here, no hub) given a Llama-3-style chat template.

Reports the median seconds over repeats and the ratio, plus pairs tokenized per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from seqpref import base_model, data

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n\n{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n\n{% endif %}"
)
WORDS = "the a to of and how can i you it is what do for my with make good bad help safe water cook".split()


def _sentence(rng, n):
    return " ".join(rng.choice(WORDS, size=n)) + " ."


def hh_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` rows shaped like Anthropic/hh-rlhf: shared history, different last assistant turns."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        history = ""
        for _ in range(int(rng.integers(0, 4))):
            history += f"\n\nHuman: {_sentence(rng, int(rng.integers(5, 30)))}\n\nAssistant: {_sentence(rng, int(rng.integers(5, 60)))}"
        history += f"\n\nHuman: {_sentence(rng, int(rng.integers(5, 30)))}\n\nAssistant: "
        long = rng.random() < 0.02
        rows.append(
            {
                "chosen": history + _sentence(rng, 900 if long else int(rng.integers(5, 120))),
                "rejected": history + _sentence(rng, int(rng.integers(5, 120))),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seqpref-prepare-"))
    paths = {}
    for name, seed in (("helpful", 0), ("harmless", 1)):
        paths[name] = work / f"{name}.jsonl"
        paths[name].write_text("\n".join(json.dumps(r) for r in hh_rows(args.rows, seed)) + "\n")
    tokenizer = base_model.train_tokenizer([" ".join(WORDS)] * 50, vocab_size=400)
    tokenizer.chat_template = CHAT_TEMPLATE
    specs = {
        name: {"source": "hh_rlhf", "dataset": str(path), "train_size": args.train_size, "eval_size": args.eval_size}
        for name, path in paths.items()
    }
    seconds = {"no tokenizer": [], "chat template": []}
    report = None
    for repeat in range(args.repeats):
        for mode in seconds:
            data._ROWS.clear()  # read the files afresh every time
            start = time.perf_counter()
            report = data.prepare(
                specs["helpful"],
                work / f"{mode}-{repeat}",
                0,
                "conflict",
                "helpful",
                tokenizer if mode == "chat template" else None,
                args.max_length if mode == "chat template" else None,
                {"harmless": specs["harmless"]},
            )
            seconds[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    tokenized = report["train_pairs"] + report["eval_pairs"] + report["dropped"]["over_length"]["count"]
    extra = medians["chat template"] - medians["no tokenizer"]
    print(
        f"{args.rows} rows per objective, train_size {args.train_size}, eval_size {args.eval_size}, "
        f"max_length {args.max_length}, median of {args.repeats}"
    )
    for mode, value in medians.items():
        print(f"  {mode:14s} {value:7.2f} s")
    print(
        f"  ratio chat template / no tokenizer: {medians['chat template'] / medians['no tokenizer']:.2f}x; "
        f"{tokenized} pairs tokenized, {tokenized / max(extra, 1e-9):.0f} pairs/s"
    )
    print(
        f"  kept {report['rows_kept']}, train {report['train_pairs']}, eval {report['eval_pairs']}, "
        f"over_length {report['dropped']['over_length']['count']}, "
        f"truncated train {report['tokens']['train']['truncated']['count']}"
    )


if __name__ == "__main__":
    main()
