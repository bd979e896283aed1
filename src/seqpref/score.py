"""Score every eval pair of every objective of a setting after one stage, against the base model.

``python -m seqpref.score OUT --run JSON --objective NAME EVAL BASE_LOGPS [--objective ...] [--adapter DIR --base MODEL]``

Stage 0 is the base model itself: its scores come from the base log-probs alone (no forward pass),
so every margin is exactly 0 there. A later stage loads the base model with the stage's adapter
*unmerged* and runs one forward pass per response; the reference is always the base log-probs of
the same pairs, computed once by the ``base_logps`` rule in the same precision (``score.dtype``).

Why unmerged: ``merge_and_unload`` adds ΔW = s·B·A into the base weights in the base's dtype. In
bf16 (8 significant bits) an update of ~1e-4 on weights of ~0.02 is mostly rounded away, so a merged
bf16 scorer scores a model that was never trained (on SmolLM2-135M: a mean margin of 0.25 nats
stored against 0.63 in fp32). Unmerged, the LoRA path runs beside the frozen weights, as in training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict

import pandas as pd
import torch

from seqpref import metrics, provenance, tables
from seqpref.lora import load_policy
from seqpref.options import ScoreOptions

log = logging.getLogger("seqpref.score")


def score_rows(policy_logps: pd.DataFrame, base_logps: pd.DataFrame, run: dict, objective: str, beta: float):
    """Join policy and base log-probs of one objective's eval pairs into ``tables.PAIR_SCORES`` rows.

    Both frames have the ``tables.LOGPS`` columns for the same pairs; token counts must agree (the
    same tokenization), or the pair ids involved are named in a ``ValueError``.
    """
    merged = policy_logps.merge(base_logps, on="pair_id", how="outer", suffixes=("", "_ref"), indicator=True)
    unmatched = merged.loc[merged["_merge"] != "both", "pair_id"].tolist()
    if unmatched:
        raise ValueError(f"{objective}: pairs scored without base log-probs or vice versa: {unmatched[:5]}")
    for side in ("chosen", "rejected"):
        bad = merged.loc[merged[f"n_tokens_{side}"] != merged[f"n_tokens_{side}_ref"], "pair_id"].tolist()
        if bad:
            raise ValueError(f"{objective}: {side} tokenized differently from the base log-probs: {bad[:5]}")
    empty = merged.loc[(merged["n_tokens_chosen"] < 1) | (merged["n_tokens_rejected"] < 1), "pair_id"].tolist()
    if empty:
        raise ValueError(f"{objective}: pairs whose prompt alone fills max_length (no response tokens): {empty[:5]}")
    frame = pd.DataFrame(
        {
            "pair_id": merged["pair_id"],
            "logp_chosen": merged["logp_chosen"],
            "logp_rejected": merged["logp_rejected"],
            "ref_logp_chosen": merged["logp_chosen_ref"],
            "ref_logp_rejected": merged["logp_rejected_ref"],
            "n_tokens_chosen": merged["n_tokens_chosen"],
            "n_tokens_rejected": merged["n_tokens_rejected"],
            "truncated": merged["truncated"] | merged["truncated_ref"],
        }
    )
    metrics.pair_metrics(frame, beta)
    for key in ("setting", "method", "order", "seed", "stage", "trained_objective"):
        frame[key] = run[key]
    frame["objective"] = objective
    frame["beta"] = beta
    return frame.sort_values("pair_id", kind="stable").reset_index(drop=True)


def score_stage(run: dict, objectives: list[tuple[str, str, str]], options: ScoreOptions, base=None, adapter=None):
    """Pair scores of every ``(objective, eval_pairs_path, base_logps_path)`` after one stage.

    With no ``adapter`` (stage 0) the policy is the base and its log-probs are the base log-probs.
    ``options`` is a :class:`ScoreOptions` or a dict of its fields. Returns one frame with the
    ``tables.PAIR_SCORES`` columns.
    """
    if isinstance(options, dict):
        options = ScoreOptions(**options)
    from seqpref.logps import pair_logps, read_pairs

    model = tokenizer = None
    if adapter:
        model, tokenizer = load_policy(base, adapter, options.dtype, options.attn_implementation)
    frames = []
    for objective, eval_path, base_logps_path in objectives:
        base_logps = pd.read_parquet(base_logps_path)
        if model is None:
            policy = base_logps.copy()
        else:
            pairs = read_pairs(eval_path)
            policy = pair_logps(model, tokenizer, pairs, options.max_length, options.batch_size, options.share_prompt)
        frames.append(score_rows(policy, base_logps, run, objective, options.beta))
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> None:
    """CLI: score one stage (``score_stage`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="pair-score Parquet to write")
    parser.add_argument("--run", required=True, help="JSON: setting, method, order, seed, stage, trained_objective")
    parser.add_argument(
        "--objective", nargs=3, action="append", required=True, metavar=("NAME", "EVAL_PAIRS", "BASE_LOGPS")
    )
    parser.add_argument("--adapter", default=None, help="adapter directory (omit for stage 0)")
    parser.add_argument("--base", default=None, help="base model id or directory (with --adapter)")
    parser.add_argument("--options", default="{}", help="JSON of ScoreOptions")
    parser.add_argument(
        "--share-prompt", type=int, choices=[0, 1], default=None, help="overrides the options' share_prompt"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.adapter and not args.base:
        parser.error("--adapter needs --base")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    options = ScoreOptions(
        **{
            **json.loads(args.options),
            **({} if args.share_prompt is None else {"share_prompt": bool(args.share_prompt)}),
        }
    )
    run = json.loads(args.run)
    start = time.time()
    frame = score_stage(run, [tuple(o) for o in args.objective], options, args.base, args.adapter)
    record = provenance.provenance("score_stage", {"options": asdict(options), "run": run, "adapter": args.adapter})
    tables.write_table(frame, args.out, tables.PAIR_SCORES, record)
    means = frame.groupby("objective")["reward_margin"].mean().round(3).to_dict()
    log.info("scored %d pairs in %.1fs; mean reward_margin %s -> %s", len(frame), time.time() - start, means, args.out)


if __name__ == "__main__":
    main()
