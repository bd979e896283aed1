"""The shared prompt computed once per pair: chosen and rejected packed behind one copy of their prompt.

A pair's two sequences, ``prompt + chosen`` and ``prompt + rejected``, share the prompt; a DPO step or a
scorer that runs them separately runs the prompt through the model twice. Here one packed row per pair
carries ``prompt[:-1] · p · chosen · p' · rejected``, where ``p`` is the prompt's last token and ``p'``
a copy of it, with

* position ids ``0 … P−1`` for the prompt, ``P …`` for the chosen tokens, ``P−1`` for ``p'`` and
  ``P …`` again for the rejected tokens;
* a block attention mask: the prompt and chosen tokens attend causally as in ``prompt + chosen``;
  ``p'`` and the rejected tokens attend ``prompt[:-1]`` and, causally, each other, never ``p`` or a
  chosen token. ``p'`` therefore sees exactly what ``p`` sees (the same keys at the same positions) and
  its hidden state is ``p``'s: it predicts the first rejected token as ``p`` predicts the first chosen.

Every completion token is then predicted from the same keys, values and positions as in its own
sequence: the log-probs are the unshared ones up to floating-point reassociation (tested to 1e-5 in
fp32, chat-templated and truncated pairs included), and gradients flow through the one prompt pass to
both responses. Prefix sharing has been reported at 1.1–1.5× DPO throughput (arXiv 2410.20305).
The prompt is ``P − 1`` tokens shorter per pair than the two unshared sequences (one token, ``p'``, is
duplicated), so the gain grows with the prompt's share of the tokens (multi-turn hh-rlhf transcripts).

Why our own code: TRL 1.16 runs the two sequences as separate rows (its padding-free mode is disabled),
and HF models take a custom 4-D mask but nothing builds this one. The packed rows go through TRL's own
fused LM head in training (``shift_labels``), so TRL computes the loss and every logged metric exactly
as on its own rows (:class:`SharedPromptModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100
PROMPT, LAST, CHOSEN, REJECTED, PAD = 0, 3, 1, 2, -1  # segment of each packed position


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32, or as they are when already float32 or float64 (for the log-softmax)."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


@dataclass
class PackedPairs:
    """A batch of pairs packed one row per pair (see the module docstring).

    ``input_ids``, ``position_ids``, ``shift_labels`` (the token each position predicts, IGNORE where
    none): ``(B, L)`` long; ``attention_mask``: ``(B, 1, L, L)`` (bool, True = attend, or additive
    float, 0 = attend), or for a model whose layers attend differently one such mask per layer type
    (``{"full_attention": …, "sliding_attention": …}``, :func:`attention_layout`);
    ``chosen_index`` / ``rejected_index``: flat indices into ``(B·L)`` of the positions that predict
    each pair's chosen / rejected tokens, pairs in order and tokens in order within a pair;
    ``chosen_counts`` / ``rejected_counts``: tokens per pair, ``(B,)``.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | dict
    shift_labels: torch.Tensor
    chosen_index: torch.Tensor
    rejected_index: torch.Tensor
    chosen_counts: torch.Tensor
    rejected_counts: torch.Tensor


def packed_length(prompt: list[int], chosen: list[int], rejected: list[int]) -> int:
    """Tokens of a pair's packed row: P + C + 1 + R (against 2P + C + R unshared)."""
    return len(prompt) + len(chosen) + 1 + len(rejected)


def attention_layout(model) -> tuple[int | None, bool]:
    """``(window, per_layer_type)`` of a causal LM's attention, for :func:`pack`: ``window`` is the
    sliding window in tokens its sliding layers use (None: every layer attends to the whole past);
    ``per_layer_type`` is True when some layers slide and others do not (Gemma 3: 5 of 6 layers), so the
    model takes one mask per layer type. A ready-made 4-D mask is used as it is by transformers
    (``masking_utils``), so the window must be in the mask itself. Raises for layer types other than full
    and sliding attention."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = causal.config
    types = set(getattr(config, "layer_types", None) or [])
    unknown = types - {"full_attention", "sliding_attention"}
    if unknown:
        raise ValueError(f"prefix sharing does not build masks for {sorted(unknown)} layers: set share_prompt: false")
    window = getattr(config, "sliding_window", None)
    if "sliding_attention" in types:
        return window, types != {"sliding_attention"}
    if not types and window and getattr(config, "use_sliding_window", True) is not False:
        return window, False  # every layer slides (Mistral)
    return None, False


def _as_mask(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """``(B, L, L)`` bool (True = attend) as a ``(B, 1, L, L)`` mask of ``dtype`` (bool, or additive float)."""
    if dtype == torch.bool:
        return allowed[:, None]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def pack(
    pairs: list[tuple[list[int], list[int], list[int]]],
    pad_id: int,
    dtype=torch.float32,
    device=None,
    layout: tuple[int | None, bool] = (None, False),
) -> PackedPairs:
    """Pack ``(prompt_ids, chosen_ids, rejected_ids)`` pairs, right-padded to the longest row.

    Every prompt must have at least one token (it predicts the first response token) and every
    response at least one. ``dtype`` is the attention mask's: ``torch.bool`` (True = attend; what SDPA
    takes in any compute dtype) or a float dtype for an additive mask (eager attention adds it).
    ``layout`` is the model's :func:`attention_layout`: with a window, a key more than ``window − 1``
    positions before its query is masked (by position id, so as in the unshared sequence), in the one
    mask or in the sliding layers' mask.
    """
    if any(len(p) < 1 or len(c) < 1 or len(r) < 1 for p, c, r in pairs):
        raise ValueError("prefix sharing needs a non-empty prompt and non-empty responses in every pair")
    width = max(packed_length(*pair) for pair in pairs)
    n = len(pairs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    segment = torch.full((n, width), PAD, dtype=torch.long)
    chosen_index, rejected_index = [], []
    for row, (prompt, chosen, rejected) in enumerate(pairs):
        p, c, r = len(prompt), len(chosen), len(rejected)
        tokens = prompt + chosen + [prompt[-1]] + rejected
        ids[row, : len(tokens)] = torch.tensor(tokens)
        positions[row, : len(tokens)] = torch.tensor(list(range(p + c)) + [p - 1] + list(range(p, p + r)))
        segment[row, : p - 1] = PROMPT
        segment[row, p - 1] = LAST
        segment[row, p : p + c] = CHOSEN
        segment[row, p + c : p + c + 1 + r] = REJECTED
        # the token each position predicts: p → chosen[0], chosen[j] → chosen[j+1], p' → rejected[0], …
        labels[row, p - 1 : p + c - 1] = torch.tensor(chosen)
        labels[row, p + c : p + c + r] = torch.tensor(rejected)
        chosen_index += [row * width + t for t in range(p - 1, p + c - 1)]
        rejected_index += [row * width + t for t in range(p + c, p + c + r)]
    query, key = segment[:, :, None], segment[:, None, :]
    allowed = torch.ones((width, width), dtype=torch.bool).tril()[None] & (key != PAD)
    allowed &= ~((query == REJECTED) & ((key == CHOSEN) | (key == LAST)))
    eye = torch.eye(width, dtype=torch.bool)[None]  # a padding position attends itself: no empty row
    window, per_layer_type = layout
    mask = _as_mask(allowed | eye, dtype)
    if window:
        near = (positions[:, :, None] - positions[:, None, :]) < window
        sliding = _as_mask((allowed & near) | eye, dtype)
        mask = {"full_attention": mask, "sliding_attention": sliding} if per_layer_type else sliding
    mask = {k: v.to(device) for k, v in mask.items()} if isinstance(mask, dict) else mask.to(device)
    counts = torch.tensor([[len(c), len(r)] for _, c, r in pairs])
    return PackedPairs(
        ids.to(device),
        positions.to(device),
        mask,
        labels.to(device),
        torch.tensor(chosen_index, device=device),
        torch.tensor(rejected_index, device=device),
        counts[:, 0].to(device),
        counts[:, 1].to(device),
    )


def pairs_of_trl_batch(inputs: dict) -> list[tuple[list[int], list[int], list[int]]] | None:
    """``(prompt, chosen, rejected)`` token ids of a TRL DPO batch (rows ``[chosen; rejected]``, each the
    prompt then the completion, right-padded), or None when a pair's two rows do not share their prompt."""
    ids, attention, completion = (inputs[k].tolist() for k in ("input_ids", "attention_mask", "completion_mask"))
    half = len(ids) // 2
    pairs = []
    for i in range(half):
        parts = []
        for row in (i, half + i):
            prompt = [t for t, a, c in zip(ids[row], attention[row], completion[row]) if a and not c]
            response = [t for t, c in zip(ids[row], completion[row]) if c]
            parts.append((prompt, response))
        if parts[0][0] != parts[1][0]:
            return None
        pairs.append((parts[0][0], parts[0][1], parts[1][1]))
    return pairs


def trl_layout(packed: PackedPairs, per_position: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """A per-position output of the packed rows, ``(B, L)``, laid out as TRL's rows: ``(2B, T−1)`` with
    chosen tokens' values in row i and rejected tokens' in row B + i at their shifted completion
    positions, 0 elsewhere (what TRL's fused head returns for its own rows)."""
    shift = completion_mask[:, 1:].bool()
    values = per_position.reshape(-1)[torch.cat([packed.chosen_index, packed.rejected_index])]
    if int(shift.sum()) != values.numel():
        raise RuntimeError(f"packed rows predict {values.numel()} tokens, TRL's rows {int(shift.sum())}")
    return per_position.new_zeros(shift.shape).masked_scatter(shift, values)


class SharedPromptModel:
    """Stands in for the policy in TRL's ``DPOTrainer._compute_loss``: the call TRL makes on its own
    rows (``model(input_ids=…, labels=…, fused_lm_head=True)``) runs the packed rows through the
    same model and TRL's fused LM head (``shift_labels``), and returns the per-token outputs (log-probs,
    entropy, mean logits, top-1) in TRL's row layout, so that TRL's loss and metrics follow unchanged."""

    FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")

    def __init__(self, model, packed: PackedPairs, completion_mask: torch.Tensor):
        self.model, self.packed, self.completion_mask = model, packed, completion_mask

    def __call__(self, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("input_ids", "attention_mask", "labels", "position_ids")}
        packed = self.packed
        outputs = self.model(
            input_ids=packed.input_ids,
            attention_mask=packed.attention_mask,
            position_ids=packed.position_ids,
            shift_labels=packed.shift_labels,
            **kwargs,
        )
        for name in self.FIELDS:
            value = getattr(outputs, name, None)
            if value is not None:
                setattr(outputs, name, trl_layout(packed, value, self.completion_mask))
        return outputs


def takes_custom_mask(model) -> bool:
    """Whether ``model``'s attention kernel takes the packed rows' custom mask (SDPA, eager; not flash):
    where it does not, prompt sharing is skipped and pairs run unshared (the same scores, more compute)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (getattr(causal.config, "_attn_implementation", "sdpa") or "sdpa") in ("sdpa", "eager")


def mask_dtype(model):
    """The attention-mask dtype :func:`pack` should build for ``model``: bool under SDPA, the model's
    float dtype under eager attention; a ``ValueError`` for kernels that take no custom mask (flash)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    kind = getattr(causal.config, "_attn_implementation", "sdpa") or "sdpa"
    if kind == "sdpa":
        return torch.bool
    if kind == "eager":
        return next(causal.parameters()).dtype
    raise ValueError(f"prefix sharing needs sdpa or eager attention, not {kind!r}: set share_prompt: false")


def backbone_and_head(model):
    """``(decoder, lm_head)`` of a causal LM, PEFT-wrapped or not (a LoRA adapter lives inside the
    decoder's modules, so calling the decoder applies it)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(causal.config, "final_logit_softcapping", None) or getattr(causal.config, "logit_scale", None):
        raise ValueError("prefix sharing does not apply logit soft-capping or scaling: turn it off for this model")
    return causal.get_decoder(), causal.get_output_embeddings()


@torch.no_grad()
def shared_pair_logps(
    model, pairs: list[tuple[list[int], list[int], list[int]]], pad_id: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Summed completion log-probs of chosen and of rejected for every ``(prompt, chosen, rejected)``,
    each float64 ``(n,)`` in nats, one packed row per pair. Pairs are batched by packed length (sorted,
    so a batch pads little); logits only at the positions that predict a response token, log-softmax
    in float32 whatever the model dtype."""
    decoder, head = backbone_and_head(model)
    device = next(model.parameters()).device
    dtype, layout = mask_dtype(model), attention_layout(model)
    order = sorted(range(len(pairs)), key=lambda i: packed_length(*pairs[i]))
    chosen_out, rejected_out = np.zeros(len(pairs)), np.zeros(len(pairs))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        packed = pack([pairs[i] for i in index], pad_id, dtype, device, layout)
        hidden = decoder(
            input_ids=packed.input_ids,
            attention_mask=packed.attention_mask,
            position_ids=packed.position_ids,
            use_cache=False,
        ).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])
        labels = packed.shift_labels.reshape(-1)
        for flat, counts, out in (
            (packed.chosen_index, packed.chosen_counts, chosen_out),
            (packed.rejected_index, packed.rejected_counts, rejected_out),
        ):
            logprobs = torch.log_softmax(at_least_float32(head(hidden[flat])), dim=-1)
            token = logprobs.gather(-1, labels[flat].unsqueeze(-1)).squeeze(-1)
            owner = torch.repeat_interleave(torch.arange(len(index), device=device), counts)
            sums = torch.zeros(len(index), dtype=torch.float64, device=device).index_add_(0, owner, token.double())
            out[index] = sums.cpu().numpy()
    return chosen_out, rejected_out
