"""GPU-hours of a study's grid, from its data report's token counts and a training / scoring tokens/s.

    python benchmarks/paper_cost.py [--config config/paper.yaml] [--results results]
                                    [--params 8.03e9] [--peak-tflops 989] [--mfu 0.4]

Tokens per pair are read from each objective's ``<results>/data/<setting>/<objective>/report.json``
(mean prompt, chosen and rejected tokens of the train and eval splits, as training tokenizes them):
run ``snakemake --configfile config/paper.yaml results/tables/data_report.tsv`` first (CPU only,
reads the datasets). Where a report is missing, the per-source lengths in :data:`ASSUMED` are used and
the output says so.

Work per step: a DPO pair is two sequences (prompt + chosen, prompt + rejected). A LoRA training
token costs ≈ 4·N FLOPs (forward, and the backward to activations; frozen weights get no weight
gradient), 6·N with activation checkpointing (one more forward); a scoring token 2·N. Method
multipliers on a stage's training work: spo 7/3 (three forwards and two backwards), mix ×(number of
objectives), maxright + its gap re-evaluations (every objective, forward only, every k steps);
gradient probes add two forward/backward passes of ``diagnostics.batch_size`` pairs per earlier
objective every ``diagnostics.every`` steps. Throughput = MFU × peak FLOP/s / FLOPs per token (the
defaults: H100 SXM dense bf16 peak 989 TFLOP/s, fp32 scoring on TF32 tensor cores at half that).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml
from record import json_argument, write_record

from seqpref import plan

#: mean (prompt, chosen, rejected) tokens per pair assumed when a data report is missing (Llama-3
#: tokenizer, chat template included; rough figures for these datasets, replace with the report's)
ASSUMED = {
    "hh_rlhf": (180, 90, 90),
    "helpsteer2": (350, 420, 420),
    "pku_saferlhf": (60, 140, 140),
    "ultrafeedback": (170, 280, 280),
    "lab": (20, 15, 15),
    "file": (60, 40, 40),
}


def pair_tokens(results: Path, setting: str, objective: str, spec: dict) -> tuple[dict, bool]:
    """Mean tokens per pair (prompt + chosen + prompt + rejected) of each split, and whether measured."""
    report = results / "data" / setting / objective / "report.json"
    if report.is_file():
        tokens = json.loads(report.read_text())["tokens"]
        return {
            split: 2 * tokens[split]["prompt"]["mean"]
            + tokens[split]["chosen"]["mean"]
            + tokens[split]["rejected"]["mean"]
            for split in ("train", "eval")
        }, True
    prompt, chosen, rejected = ASSUMED[spec["source"]]
    return dict.fromkeys(("train", "eval"), 2 * prompt + chosen + rejected), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/paper.yaml")
    parser.add_argument("--results", default=None, help="results folder (default: the config's `results`)")
    parser.add_argument("--params", type=float, default=8.03e9, help="model parameters N")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of one GPU")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed")
    parser.add_argument("--load-minutes", type=float, default=1.0, help="GPU minutes a job spends loading the model")
    json_argument(parser)
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    results = Path(args.results or config.get("results", "results"))
    train, diag = config["train"], config.get("diagnostics", {"enabled": False})
    checkpointing = train.get("activation_checkpointing", False)
    train_flops, score_flops = (6 if checkpointing else 4) * args.params, 2 * args.params
    train_tps = args.mfu * args.peak_tflops * 1e12 / train_flops
    score_tps = args.mfu * args.peak_tflops / 2 * 1e12 / score_flops  # fp32 scoring: TF32 at half the bf16 peak
    effective_batch = train["batch_size"] * train.get("gradient_accumulation_steps", 1)
    seeds = len(config["seeds"])
    total_train = total_score = 0.0
    gpu_jobs = 0
    measured_all = True
    lines = []
    for setting, block in config["settings"].items():
        names = list(block["objectives"])
        tokens, sizes = {}, {}
        for name, spec in block["objectives"].items():
            tokens[name], measured = pair_tokens(results, setting, name, spec)
            measured_all &= measured
            report = results / "data" / setting / name / "report.json"
            sizes[name] = (
                json.loads(report.read_text())["train_pairs"] if report.is_file() else spec.get("train_size") or 5000,
                json.loads(report.read_text())["eval_pairs"] if report.is_file() else spec.get("eval_size", 500),
            )
        eval_tokens = sum(sizes[n][1] * tokens[n]["eval"] for n in names)
        setting_train = setting_score = 0.0
        for method in config["methods"]:
            orders = plan.orders(config, setting) if method in ("dpo", "spo") else ["-".join(names)]
            for order in orders:
                for stage, name in enumerate(plan.stage_objectives(order), start=1):
                    pairs = sizes[name][0] * train.get("epochs", 1)
                    steps = math.ceil(pairs / effective_batch)
                    work = pairs * tokens[name]["train"]  # one DPO pass over the stage objective's pairs
                    if method == "spo":
                        work *= 7 / 3
                    elif method == "mix":
                        work *= len(names)
                    elif method == "maxright":
                        k = config["method_options"]["maxright"].get("eval_every", 10)
                        work *= 1 + len(names) / 3 / k
                    if diag.get("enabled") and method in ("dpo", "spo") and stage > 1:
                        probes = 1 + steps // diag.get("every", 10)
                        work += probes * 2 * (stage - 1) * diag.get("batch_size", 8) * tokens[name]["train"]
                    setting_train += work
                    setting_score += eval_tokens  # every objective's eval pairs after every stage
                    gpu_jobs += 2 * seeds  # the stage's training and scoring jobs
        setting_score += sum(sizes[n][0] * tokens[n]["train"] + sizes[n][1] * tokens[n]["eval"] for n in names) / seeds
        gpu_jobs += 2 * len(names)  # base log-probs of each split, once
        total_train += setting_train * seeds
        total_score += setting_score * seeds
        lines.append(
            f"  {setting:28s} train {setting_train * seeds / 1e6:8.1f} M tokens   score {setting_score * seeds / 1e6:6.1f} M tokens"
        )
    hours_train, hours_score = total_train / train_tps / 3600, total_score / score_tps / 3600
    print(f"{args.config}: {len(config['settings'])} settings x {config['methods']} x {seeds} seeds")
    print(
        f"tokens per pair from {'the data reports' if measured_all else 'ASSUMED lengths (no data report for some objectives)'}"
    )
    print("\n".join(lines))
    print(
        f"training: {train_tps:,.0f} tokens/s per GPU ({args.mfu:.0%} MFU of {args.peak_tflops:.0f} TFLOP/s, "
        f"{'6' if checkpointing else '4'}N FLOPs/token) -> {hours_train:,.1f} GPU-hours"
    )
    print(f"scoring (fp32): {score_tps:,.0f} tokens/s per GPU -> {hours_score:,.1f} GPU-hours")
    hours_load = gpu_jobs * args.load_minutes / 60
    print(f"model loads: {gpu_jobs} GPU jobs x {args.load_minutes:g} min -> {hours_load:,.1f} GPU-hours")
    print(f"total: {hours_train + hours_score + hours_load:,.1f} GPU-hours")
    write_record(
        args.json,
        {
            "config": args.config,
            "seeds": seeds,
            "measured_lengths": measured_all,
            "train_tokens_per_s": train_tps,
            "score_tokens_per_s": score_tps,
            "mfu": args.mfu,
            "peak_tflops": args.peak_tflops,
            "gpu_jobs": gpu_jobs,
            "load_minutes": args.load_minutes,
            "hours_train": hours_train,
            "hours_score": hours_score,
            "hours_load": hours_load,
            "hours_total": hours_train + hours_score + hours_load,
        },
    )


if __name__ == "__main__":
    main()
