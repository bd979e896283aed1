"""Time overhead of the gradient diagnostics on a lab stage 2, measured in one process.

    python benchmarks/diagnostics_overhead.py [--every 4] [--repeats 3]

Builds the lab base model (default LabModelOptions) and the conflicting setting's data in a
temporary directory, trains stage 1 once, then trains stage 2 alternately without and with the
gradient probe (``--repeats`` times each) and reports the median stage-2 training seconds of each,
their ratio, and the probe's own seconds.
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
from seqpref.options import DiagnosticsOptions, LabModelOptions, TrainOptions

SPEC = {"source": "lab", "train_size": 256, "eval_size": 64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="seqpref-diag-"))
    base_model.build_lab_base(work / "base", LabModelOptions())
    model, tokenizer = base_model.load_base(str(work / "base"))
    paths = {}
    for name, prefer in (("comply", {"opener": "comply"}), ("refuse", {"opener": "refuse"})):
        data.prepare({**SPEC, "prefer": prefer}, work / name, 0, "conflicting", name)
        pairs = tables.read_tables([work / name / "train.parquet"])
        tables.write_table(
            logps.pair_logps(model, tokenizer, pairs, 128, 64), work / name / "logps.parquet", tables.LOGPS, {}
        )
        paths[name] = (str(work / name / "train.parquet"), str(work / name / "logps.parquet"))
    options = TrainOptions(beta=0.1, learning_rate=1e-3, batch_size=16, max_length=128)
    run = {"setting": "conflicting", "method": "dpo", "order": "comply-refuse", "seed": 0}
    train.train_stage(
        str(work / "base"),
        *paths["comply"],
        str(work / "s1"),
        str(work / "l1.parquet"),
        options,
        {**run, "stage": 1, "objective": "comply"},
    )
    earlier = [("comply", 1, *paths["comply"])]
    timings = {"off": [], "on": []}
    probe_seconds = []
    for repeat in range(args.repeats):
        for mode in ("off", "on"):
            diagnostics = DiagnosticsOptions(enabled=mode == "on", every=args.every, batch_size=16)
            start = time.perf_counter()
            summary = train.train_stage(
                str(work / "base"),
                *paths["refuse"],
                str(work / f"s2-{mode}-{repeat}"),
                str(work / f"l2-{mode}-{repeat}.parquet"),
                options,
                {**run, "stage": 2, "objective": "refuse"},
                str(work / "s1"),
                earlier,
                diagnostics,
                str(work / f"d-{mode}-{repeat}.parquet"),
            )
            timings[mode].append(time.perf_counter() - start)
            if mode == "on":
                probe_seconds.append(summary["diagnostics_seconds"])
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    steps = summary["steps"]
    probes = len([s for s in range(1, steps + 1) if s == 1 or s % args.every == 0])
    print(f"stage 2: {steps} optimiser steps, {probes} probes (every {args.every}), median of {args.repeats}")
    print(f"train_stage without diagnostics: {off:.2f} s; with: {on:.2f} s; ratio ×{on / off:.2f}")
    probe = statistics.median(probe_seconds)
    print(f"probe time inside the stage: {probe:.2f} s ({probe / probes * 1000:.0f} ms per probe)")
    write_record(
        args.json,
        {
            "steps": steps,
            "probes": probes,
            "every": args.every,
            "repeats": args.repeats,
            "stage_s_off": off,
            "stage_s_on": on,
            "ratio": on / off,
            "probe_s": probe,
            "ms_per_probe": probe / probes * 1000,
            "timings": timings,
        },
    )


if __name__ == "__main__":
    main()
