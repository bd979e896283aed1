"""The learning curve that chose config/public.yaml's budget: how much each objective's own stage
gains on its held-out pairs after 4, 8, 12, ... optimiser steps of LoRA DPO on SmolLM2-135M-Instruct.

    snakemake --cores 2 --configfile config/public.yaml OVERLAY.yaml <data and base log-prob targets>
    python benchmarks/public_learning_curve.py results/public-curve [--steps 4 8 16 24 32] [--lr 1e-3]

Reads a prepared run (``results/<...>/data/<setting>/<objective>/{train,eval}.parquet``, the base
log-probs of both splits and the imported base model: what the workflow's ``prepare_data``,
``base_logps`` and ``import_base_model`` rules write) and, for each objective, trains one stage as
the workflow does (``seqpref.train.train_stage``, the config's train options) on the first
``max(steps) × 8`` train pairs, scoring the eval pairs with the current adapter after each listed
step. Prints, per objective and step, the mean reward margin change against the base (nats, the
``reward_margin`` of ``seqpref.metrics``: Δlog π(chosen) − Δlog π(rejected)), its 95% t-interval over
held-out pairs, and the share of pairs ranked right; writes them to ``learning_curve.tsv`` beside
the results. The smallest step count whose lower bound clears 0 for every objective is the budget.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sps

from seqpref import dpo_trainer, logps, metrics, train
from seqpref.options import TrainOptions

REPO = Path(__file__).resolve().parents[1]


def margin_interval(change: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-pair reward-margin changes ``(n,)`` (nats) and its t-interval over pairs."""
    mean = float(np.mean(change))
    half = float(sps.t.ppf(0.5 + confidence / 2, len(change) - 1) * np.std(change, ddof=1) / np.sqrt(len(change)))
    return mean, mean - half, mean + half


def curve(
    results: Path, setting: str, objective: str, options: TrainOptions, steps: list[int], score_batch: int
) -> list[dict]:
    """Train one stage of ``objective`` for ``max(steps)`` steps, scoring its eval pairs at each listed step."""
    data = results / "data" / setting / objective
    eval_pairs = pd.read_parquet(data / "eval.parquet")
    base_eval = pd.read_parquet(results / "base_logps" / setting / objective / "eval.parquet").set_index("pair_id")
    pairs_needed = max(steps) * options.batch_size * options.gradient_accumulation_steps
    train_pairs = pd.read_parquet(data / "train.parquet")
    if len(train_pairs) < pairs_needed:
        raise SystemExit(f"{objective}: {len(train_pairs)} train pairs, {pairs_needed} needed for {max(steps)} steps")
    work = results / "curve" / objective
    work.mkdir(parents=True, exist_ok=True)
    train_pairs.iloc[:pairs_needed].to_parquet(work / "pairs.parquet")
    base_train = pd.read_parquet(results / "base_logps" / setting / objective / "train.parquet")
    base_train.to_parquet(work / "base_logps.parquet")
    rows: list[dict] = []
    original = dpo_trainer.log_callback
    started = time.perf_counter()

    def scoring_callback(records):
        callback = original(records)
        end = callback.on_step_end

        def on_step_end(args, state, control, model=None, processing_class=None, **kwargs):
            end(args, state, control, **kwargs)
            if state.global_step not in steps:
                return
            model.eval()
            scored = logps.pair_logps(model, processing_class, eval_pairs, options.max_length, score_batch)
            model.train()
            ref = base_eval.loc[scored["pair_id"]]
            change = metrics.reward_margin(
                scored["logp_chosen"].to_numpy(),
                scored["logp_rejected"].to_numpy(),
                ref["logp_chosen"].to_numpy(),
                ref["logp_rejected"].to_numpy(),
            )
            mean, lo, hi = margin_interval(change)
            rows.append(
                {
                    "objective": objective,
                    "step": state.global_step,
                    "pairs_trained": state.global_step * 8,
                    "eval_pairs": len(change),
                    "margin_change": mean,
                    "lo": lo,
                    "hi": hi,
                    "ranked_right": float(np.mean(metrics.correct(change))),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

        callback.on_step_end = on_step_end
        return callback

    dpo_trainer.log_callback = scoring_callback
    try:
        run = {"setting": setting, "method": "dpo", "order": "curve", "seed": 0, "stage": 1, "objective": objective}
        train.train_stage(
            str(results / "base_model"),
            str(work / "pairs.parquet"),
            str(work / "base_logps.parquet"),
            str(work / "adapter"),
            str(work / "log.parquet"),
            options,
            run,
        )
    finally:
        dpo_trainer.log_callback = original
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a prepared run's results folder")
    parser.add_argument("--config", type=Path, default=REPO / "config/public.yaml")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 24, 32])
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    parser.add_argument("--objectives", nargs="+", default=None)
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    ((setting, spec),) = config["settings"].items()
    train_config = {k: v for k, v in config["train"].items() if k != "checkpoint_every"}
    if args.lr is not None:
        train_config["learning_rate"] = args.lr
    options = TrainOptions(**train_config, dtype=config["dtype"], attn_implementation=config["attn_implementation"])
    rows = []
    for objective in args.objectives or list(spec["objectives"]):
        rows += curve(args.results, setting, objective, options, sorted(args.steps), config["score"]["batch_size"])
    table = pd.DataFrame(rows)
    table.to_csv(args.results / "learning_curve.tsv", sep="\t", index=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
