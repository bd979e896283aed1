"""Time per optimiser step of every method on the lab's conflicting setting, measured in one run.

    python benchmarks/method_step_cost.py [--repeats 3] [--steps 16] [--threads 1]

Builds the lab base model (default LabModelOptions) and the conflicting setting's data (comply,
refuse) in a temporary directory, then trains one stage of each method in rotation, ``--repeats``
times: sequential ``dpo`` and ``spo`` on comply, joint ``mix``, ``alright`` and ``maxright`` on both
(maxright re-evaluating its gaps every 10 steps, f* typed). Each stage has the lab's budget (16
steps of 16 pairs, max_length 128). Per stage the median ``step_seconds`` of the training log over
steps ≥ 3 (warm) is taken; the report gives, per method, the median over repeats in ms and the
ratio to dpo's. The joint methods are expected within 1.2× of dpo, except mix, which does one
forward/backward per objective.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import torch

from seqpref import base_model, data, joint, logps, methods, tables, train
from seqpref.options import LabModelOptions, TrainOptions

SPEC = {"source": "lab", "train_size": 256, "eval_size": 64}
METHODS = ("dpo", "spo", "mix", "alright", "maxright")


def stage_step_ms(log_path: Path) -> float:
    """Median wall milliseconds per optimiser step of a stage's training log, steps ≥ 3."""
    log = pd.read_parquet(log_path)
    seconds = log[(log["metric"] == "step_seconds") & (log["step"] >= 3)]["value"]
    return 1000.0 * float(seconds.median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's jobs use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="seqpref-steps-"))
    base_model.build_lab_base(work / "base", LabModelOptions())
    model, tokenizer = base_model.load_base(str(work / "base"))
    objectives = []
    for name, prefer in (("comply", {"opener": "comply"}), ("refuse", {"opener": "refuse"})):
        data.prepare({**SPEC, "prefer": prefer}, work / name, 0, "conflicting", name)
        pairs = tables.read_tables([work / name / "train.parquet"])
        tables.write_table(
            logps.pair_logps(model, tokenizer, pairs, 128, 64), work / name / "logps.parquet", tables.LOGPS, {}
        )
        objectives.append((name, str(work / name / "train.parquet"), str(work / name / "logps.parquet")))
    base = str(work / "base")
    timings: dict[str, list[float]] = {m: [] for m in METHODS}
    for repeat in range(args.repeats):
        for method in METHODS:
            out, log_path = work / f"{method}-{repeat}", work / f"{method}-{repeat}.parquet"
            options = TrainOptions(beta=0.1, learning_rate=1e-3, batch_size=16, max_length=128)
            run = {"setting": "conflicting", "method": method, "order": "comply-refuse", "seed": repeat, "stage": 1}
            if methods.kind(method) == methods.SEQUENTIAL:
                train.train_stage(
                    base,
                    objectives[0][1],
                    objectives[0][2],
                    str(out),
                    str(log_path),
                    options,
                    {**run, "objective": "comply"},
                )
            else:
                settings = methods.options(
                    method,
                    **({"eval_every": 10, "optimum": {"comply": 0.6, "refuse": 0.6}} if method == "maxright" else {}),
                )
                joint.train_joint_stage(
                    base, objectives, 1, str(out), str(log_path), options, settings, {**run, "objective": "joint"}
                )
            timings[method].append(stage_step_ms(log_path))
    baseline = statistics.median(timings["dpo"])
    print(
        f"ms per optimiser step (median over {args.repeats} stages of 16 steps, steps >= 3), {args.threads} thread(s)"
    )
    print(f"{'method':<10} {'ms/step':>8} {'x dpo':>6}   per repeat")
    for method in METHODS:
        median = statistics.median(timings[method])
        print(f"{method:<10} {median:8.1f} {median / baseline:6.2f}   {', '.join(f'{t:.1f}' for t in timings[method])}")


if __name__ == "__main__":
    main()
