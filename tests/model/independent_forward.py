"""Policy log-probs computed independently of seqpref.logps (one plain forward per response, full
logits, float32 log-softmax), to check the scorer against; and the bf16 layout-noise bound."""

from __future__ import annotations

import pandas as pd
import torch

from seqpref import base_model, tokenization


def unmerged_logps(directory, adapter, pairs, dtype, max_length) -> pd.DataFrame:
    """Policy log-probs written out independently of seqpref.logps: the base in ``dtype`` plus the
    adapter (unmerged), one unpadded sequence at a time, full logits, float32 log-softmax."""
    from peft import PeftModel

    model, tokenizer = base_model.load_base(directory, dtype)
    model = PeftModel.from_pretrained(model, adapter).eval()
    rows = []
    for row in pairs.itertuples():
        pair = tokenization.tokenize_pair(
            tokenizer,
            *tokenization.model_inputs(tokenizer, row.prompt, row.prompt_messages, row.chosen, row.rejected),
            max_length,
        )
        sums = []
        for completion in (pair.chosen_ids, pair.rejected_ids):
            ids = torch.tensor([pair.prompt_ids + completion])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            token = logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
            sums.append(float(token[len(pair.prompt_ids) - 1 :].sum()))
        rows.append({"pair_id": row.pair_id, "logp_chosen": sums[0], "logp_rejected": sums[1]})
    return pd.DataFrame(rows)


def padded_unmerged_logps(directory, adapter, pairs, dtype, max_length) -> pd.DataFrame:
    """As :func:`unmerged_logps` but a second layout: every response of a side in one right-padded batch
    with an attention mask (the same function; in bf16 its rounding differs from the unpadded one)."""
    from peft import PeftModel

    model, tokenizer = base_model.load_base(directory, dtype)
    model = PeftModel.from_pretrained(model, adapter).eval()
    tokenized = [
        tokenization.tokenize_pair(
            tokenizer,
            *tokenization.model_inputs(tokenizer, row.prompt, row.prompt_messages, row.chosen, row.rejected),
            max_length,
        )
        for row in pairs.itertuples()
    ]
    sums = {}
    for side in ("chosen", "rejected"):
        rows = [p.prompt_ids + getattr(p, f"{side}_ids") for p in tokenized]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
        token = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        sums[f"logp_{side}"] = [
            float(token[i, len(p.prompt_ids) - 1 : len(rows[i]) - 1].sum()) for i, p in enumerate(tokenized)
        ]
    return pd.DataFrame({"pair_id": pairs["pair_id"].to_numpy(), **sums})


def bf16_layout_noise(layouts: list[tuple[pd.DataFrame, pd.DataFrame]], n_tokens: dict) -> float:
    """Per-token RMS of bf16 rounding between layouts of one computation, in nats per sqrt(token).

    ``layouts``: pairs of frames (indexed by pair_id, log-prob columns) that compute the same
    function in two batch layouts; ``n_tokens[side]``: each pair's response length. Rounding errors
    of independent layouts add like a random walk, so a response of n tokens moves by about
    sigma * sqrt(n); the pooled estimate is sqrt(sum of squared differences / sum of tokens)."""
    squares = tokens = 0.0
    for a, b in layouts:
        for side in ("chosen", "rejected"):
            squares += float(((a[f"logp_{side}"] - b[f"logp_{side}"]) ** 2).sum())
            tokens += float(n_tokens[side].sum())
    return (squares / tokens) ** 0.5


def real_pairs(n_each: int):
    """``n_each`` multi-turn conversations and ``n_each`` plain prompts from the real-English ``concise``
    objective (resources/real_prefs), in PAIRS columns."""
    from pathlib import Path

    import pandas as pd

    from seqpref import data

    path = Path(__file__).resolve().parents[2] / "resources/real_prefs/concise_vs_detailed/concise.jsonl"
    frame = data.read_preference_file(path)
    conversations = frame[frame["prompt"].map(lambda p: isinstance(p, list))].head(n_each)
    plain = frame[frame["prompt"].map(lambda p: isinstance(p, str))].head(n_each)
    pairs = data.as_pairs(pd.concat([conversations, plain], ignore_index=True))
    assert pairs["prompt_messages"].notna().sum() == n_each
    return pairs
