"""A DPO loss written out by hand, independent of TRL, for tests that check TRL-based code against it:
the log-probs summed by hand here, the loss of the margin by ``seqpref.metrics.dpo_loss`` (the one
formula every part of seqpref uses)."""

from __future__ import annotations

import pandas as pd
import torch

from seqpref import metrics, tokenization

BETA = 0.1
MAX_LENGTH = 256  # the tiny tokenizer is almost byte-level: keep every closer in the window


def manual_dpo_loss(model, tokenizer, pairs: pd.DataFrame, ref: pd.DataFrame, beta: float = BETA) -> torch.Tensor:
    """DPO loss written out: −log σ(β·[(logp_c − ref_c) − (logp_r − ref_r)]), mean over pairs.

    ``ref`` holds ``logp_chosen`` / ``logp_rejected`` of the reference, row-aligned with ``pairs``.
    """
    losses = []
    for row, (ref_c, ref_r) in zip(pairs.itertuples(), zip(ref["logp_chosen"], ref["logp_rejected"])):
        pair = tokenization.tokenize_pair(tokenizer, row.prompt, row.chosen, row.rejected, max_length=MAX_LENGTH)
        sums = []
        for completion in (pair.chosen_ids, pair.rejected_ids):
            ids = torch.tensor([pair.prompt_ids + completion])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)
            token = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)[0]
            sums.append(token[len(pair.prompt_ids) - 1 :].sum())
        margin = (sums[0] - ref_c) - (sums[1] - ref_r)
        losses.append(metrics.dpo_loss(metrics.dpo_margin(margin, beta)))
    return torch.stack(losses).mean()
