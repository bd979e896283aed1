"""Sequence log-probabilities of preference pairs under a model: the one forward pass seqpref scores with.

``python -m seqpref.logps MODEL PAIRS OUT`` writes the base model's log-probs of one split (the
``base_logps`` rule): computed once per dataset and split, they are both the precomputed training
reference and the evaluation reference of every stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from seqpref.options import LogpsOptions
from seqpref.prefix import at_least_float32, shared_pair_logps, takes_custom_mask
from seqpref.tokenization import TokenizedPair, model_inputs, tokenize_pair

log = logging.getLogger("seqpref.logps")


#: what the scorer and the trainer read of a pairs file
PAIR_COLUMNS = ["pair_id", "prompt", "prompt_messages", "chosen", "rejected"]


def read_pairs(path) -> pd.DataFrame:
    """The :data:`PAIR_COLUMNS` of a pairs Parquet (``prompt_messages`` null when a file predates it)."""
    frame = pd.read_parquet(path)
    if "prompt_messages" not in frame.columns:
        frame["prompt_messages"] = None
    return frame[PAIR_COLUMNS]


def tokenize_frame(tokenizer, pairs: pd.DataFrame, max_length: int | None) -> list[TokenizedPair]:
    """Tokenize every row of ``pairs`` (:data:`PAIR_COLUMNS`) as TRL would, through :func:`model_inputs`."""
    messages = pairs["prompt_messages"] if "prompt_messages" in pairs.columns else [None] * len(pairs)
    return [
        tokenize_pair(tokenizer, *model_inputs(tokenizer, p, m, c, r), max_length)
        for p, m, c, r in zip(pairs["prompt"], messages, pairs["chosen"], pairs["rejected"])
    ]


@torch.no_grad()
def sequence_logps(model, sequences: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int) -> np.ndarray:
    """Sum of completion-token log-probs for each ``(prompt_ids, completion_ids)``.

    Returns float64 ``(n,)`` in nats. Sequences are sorted by length and right-padded per batch to
    waste little compute on padding; ``log_softmax`` runs in float32 whatever the model dtype.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
    out = np.zeros(len(sequences), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        ids = [sequences[i][0] + sequences[i][1] for i in index]
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        completion = torch.zeros((len(ids), width), dtype=torch.bool)
        for row, i in enumerate(index):
            n_prompt, n_completion = len(sequences[i][0]), len(sequences[i][1])
            input_ids[row, : n_prompt + n_completion] = torch.tensor(ids[row])
            attention[row, : n_prompt + n_completion] = 1
            completion[row, n_prompt : n_prompt + n_completion] = True
        input_ids, attention, completion = input_ids.to(device), attention.to(device), completion.to(device)
        # logits only where a completion token is predicted: from the shortest prompt's last token on
        # (right padding: those are the last `keep` positions). The lm_head over a 49k vocabulary and
        # the float32 log-softmax at prompt positions are wasted work (benchmarks/real_model.py measures it).
        first = max(min(len(sequences[i][0]) for i in index) - 1, 0)
        keep = width - first
        logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(
            at_least_float32(logits[:, :-1]), dim=-1
        )  # (B, keep-1, V): token t+1 predicted at t
        targets = input_ids[:, first + 1 :].unsqueeze(-1)  # (B, keep-1, 1)
        token_logps = logprobs.gather(-1, targets).squeeze(-1) * completion[:, first + 1 :]  # (B, keep-1)
        out[index] = (
            token_logps.double().sum(dim=1).cpu().numpy()
        )  # float64 sum: no float32 rounding of ~100-token sums
    return out


def pair_logps(
    model, tokenizer, pairs: pd.DataFrame, max_length: int | None, batch_size: int, share_prompt: bool = False
) -> pd.DataFrame:
    """Log-probs of chosen and rejected for every pair; a frame with the ``tables.LOGPS`` columns.

    Takes a pairs frame (``pair_id``, ``prompt``, ``chosen``, ``rejected``). With ``share_prompt``, each
    pair is one packed row whose prompt runs once for both responses (:mod:`seqpref.prefix`; batches of
    ``batch_size`` pairs of similar packed length); otherwise chosen and rejected run as separate
    sequences in the same batches (``batch_size`` sequences), sorted by length. A pair whose prompt
    fills ``max_length`` (no response token) is scored unshared: both log-probs are 0.
    """
    tokenized = tokenize_frame(tokenizer, pairs, max_length)
    n = len(tokenized)
    if share_prompt:
        share_prompt = takes_custom_mask(model)  # flash attention takes no custom mask: unshared, same scores
    shared = [i for i, t in enumerate(tokenized) if share_prompt and t.prompt_ids and t.chosen_ids and t.rejected_ids]
    unshared = sorted(set(range(n)) - set(shared))
    logps = np.zeros(2 * n)
    if shared:
        chosen, rejected = shared_pair_logps(
            model,
            [(tokenized[i].prompt_ids, tokenized[i].chosen_ids, tokenized[i].rejected_ids) for i in shared],
            tokenizer.pad_token_id,
            batch_size,
        )
        logps[shared], logps[[n + i for i in shared]] = chosen, rejected
    if unshared:
        sequences = [(tokenized[i].prompt_ids, tokenized[i].chosen_ids) for i in unshared] + [
            (tokenized[i].prompt_ids, tokenized[i].rejected_ids) for i in unshared
        ]
        values = sequence_logps(model, sequences, tokenizer.pad_token_id, batch_size)
        logps[unshared], logps[[n + i for i in unshared]] = values[: len(unshared)], values[len(unshared) :]
    return pd.DataFrame(
        {
            "pair_id": pairs["pair_id"].to_numpy(),
            "logp_chosen": logps[:n],
            "logp_rejected": logps[n:],
            "n_tokens_chosen": np.array([len(t.chosen_ids) for t in tokenized], dtype=np.int64),
            "n_tokens_rejected": np.array([len(t.rejected_ids) for t in tokenized], dtype=np.int64),
            "truncated": np.array([t.truncated for t in tokenized], dtype=bool),
        }
    )


def main(argv=None) -> None:
    """CLI: the base model's log-probs of one split (``base_logps`` rule), or with ``--adapter`` an adapted
    model's (``sham_reference`` rule)."""
    from seqpref import base_model, provenance, tables

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="base model id or local directory")
    parser.add_argument("pairs", help="pairs Parquet of one split")
    parser.add_argument("out", help="log-probs Parquet to write")
    parser.add_argument("--options", default="{}", help="JSON of LogpsOptions")
    parser.add_argument(
        "--share-prompt", type=int, choices=[0, 1], default=None, help="overrides the options' share_prompt"
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="a LoRA adapter folder: the log-probs of MODEL with it attached (a sham's reference)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = LogpsOptions(
        **{
            **json.loads(args.options),
            **({} if args.share_prompt is None else {"share_prompt": bool(args.share_prompt)}),
        }
    )
    start = time.time()
    if args.adapter:
        from seqpref.lora import load_policy

        model, tokenizer = load_policy(args.model, args.adapter, options.dtype, options.attn_implementation)
    else:
        model, tokenizer = base_model.load_base(args.model, options.dtype, options.attn_implementation)
    pairs = read_pairs(args.pairs)
    frame = pair_logps(model, tokenizer, pairs, options.max_length, options.batch_size, options.share_prompt)
    record = provenance.provenance(
        "base_logps", {**asdict(options), "model": args.model, "adapter": args.adapter, "pairs": args.pairs}
    )
    tables.write_table(frame, args.out, tables.LOGPS, record)
    log.info(
        "base log-probs of %d pairs (%d truncated) in %.1fs -> %s",
        len(frame),
        int(frame["truncated"].sum()),
        time.time() - start,
        args.out,
    )


if __name__ == "__main__":
    main()
