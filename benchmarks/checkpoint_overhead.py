"""Time overhead of in-stage checkpoints on a lab stage, measured in one process.

    python benchmarks/checkpoint_overhead.py [--every 4 8] [--repeats 3]

Builds the lab base model (default LabModelOptions) and one lab objective (256 train pairs, the
lab's budget: 16 optimiser steps of 16 pairs) in a temporary directory, then trains the stage
alternately with ``checkpoint_every`` 0 (off) and each ``--every`` (``--repeats`` times each), and
reports the median wall seconds of the whole ``train_stage`` call (model load, training, saving) and
its ratio to the stage without checkpoints.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from record import json_argument, write_record

from seqpref import base_model, data, logps, tables, train
from seqpref.options import LabModelOptions, TrainOptions

SPEC = {"source": "lab", "train_size": 256, "eval_size": 64, "prefer": {"opener": "comply"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="seqpref-ckpt-"))
    base_model.build_lab_base(work / "base", LabModelOptions())
    model, tokenizer = base_model.load_base(str(work / "base"))
    data.prepare(SPEC, work / "comply", 0, "lab", "comply")
    pairs = tables.read_tables([work / "comply" / "train.parquet"])
    tables.write_table(logps.pair_logps(model, tokenizer, pairs, 128, 64), work / "logps.parquet", tables.LOGPS, {})
    run = {"setting": "lab", "method": "dpo", "order": "comply-x", "seed": 0, "stage": 1, "objective": "comply"}
    timings = {every: [] for every in [0, *args.every]}
    for repeat in range(args.repeats):
        for every in timings:
            options = TrainOptions(beta=0.1, learning_rate=1e-3, batch_size=16, max_length=128, checkpoint_every=every)
            start = time.perf_counter()
            summary = train.train_stage(
                str(work / "base"),
                str(work / "comply" / "train.parquet"),
                str(work / "logps.parquet"),
                str(work / f"a-{every}-{repeat}"),
                str(work / f"l-{every}-{repeat}.parquet"),
                options,
                run,
                checkpoint_dir=str(work / f"c-{every}-{repeat}"),
            )
            timings[every].append(time.perf_counter() - start)
    base = statistics.median(timings[0])
    print(f"lab stage: {summary['steps']} optimiser steps of 16 pairs; median of {args.repeats}, one thread")
    print(f"checkpoint_every 0 (off): {base:.3f} s")
    rows = []
    for every in args.every:
        median = statistics.median(timings[every])
        saves = summary["steps"] // every
        per_save_ms = (median - base) / max(saves, 1) * 1000
        print(
            f"checkpoint_every {every}: {median:.3f} s, ×{median / base:.3f} ({saves} checkpoints, "
            f"{per_save_ms:.0f} ms each)"
        )
        rows.append(
            {"every": every, "stage_s": median, "ratio": median / base, "checkpoints": saves, "ms_each": per_save_ms}
        )
    write_record(
        args.json,
        {
            "steps": summary["steps"],
            "repeats": args.repeats,
            "stage_s_off": base,
            "timings": {str(k): v for k, v in timings.items()},
            "with": rows,
        },
    )


if __name__ == "__main__":
    main()
