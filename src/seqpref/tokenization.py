"""Tokenize preference pairs exactly as TRL 1.16's ``DPOTrainer`` does, for our own scorer.

The scorer and the trainer must see the same token ids, or the base log-probs fed to the trainer as
its reference would not be the reference of the sequences it trains on. TRL (``_prepare_dataset``):

1. appends EOS to chosen and rejected of non-conversational rows (unless already there);
2. tokenizes ``prompt`` and ``prompt + response`` separately (special tokens such as BOS included);
3. starts the completion at the common prefix of the prompt with *both* prompt+response encodings;
4. at collation, truncates ``prompt + completion`` to ``max_length`` keeping the start.

Conversational rows (lists of ``{"role", "content"}`` messages) are rendered with the tokenizer's
chat template, as TRL does. :func:`model_inputs` decides, for the trainer and the scorer alike, what
one stored pair becomes: with a chat template every prompt is a conversation (a plain prompt is one
user turn) and every response an assistant turn; without one, prompts stay text.
``tests/model/test_correctness.py`` checks the ids against TRL's, with and without a chat template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_SPEAKERS = {"user": "Human", "assistant": "Assistant", "system": "System"}


def render_transcript(messages: list[dict]) -> str:
    """A conversation as plain text in hh-rlhf's own form, ready for the assistant's reply.

    Messages user ``a``, assistant ``b``, user ``c`` give
    ``"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:"``. Used to store and split conversational prompts,
    and as the prompt for tokenizers without a chat template.
    """
    turns = "".join(f"\n\n{_SPEAKERS.get(m['role'], m['role'].title())}: {m['content']}" for m in messages)
    return turns + "\n\nAssistant:"


def has_chat_template(tokenizer) -> bool:
    """Whether ``tokenizer`` renders conversations with a chat template of its own."""
    return bool(getattr(tokenizer, "chat_template", None))


def model_inputs(tokenizer, prompt: str, prompt_messages: str | None, chosen: str, rejected: str):
    """The ``(prompt, chosen, rejected)`` both the trainer and the scorer tokenize for one stored pair.

    Takes the PAIRS columns: ``prompt`` text, ``prompt_messages`` (JSON of the conversation, or None
    for a single plain prompt) and the response texts. With a chat template, returns message lists:
    the conversation (or the prompt as one user turn) and each response as one assistant turn, which
    TRL and :func:`tokenize_pair` render with the template. Without one, returns text: the prompt
    (a conversation is stored as its :func:`render_transcript`) and the responses, which after a
    transcript's ``"Assistant:"`` start with a space.
    """
    conversational = isinstance(prompt_messages, str) and bool(prompt_messages)  # null is None or NaN
    if has_chat_template(tokenizer):
        conversation = json.loads(prompt_messages) if conversational else [{"role": "user", "content": prompt}]
        return (conversation, [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}])
    if conversational:
        return prompt, " " + chosen, " " + rejected
    return prompt, chosen, rejected


@dataclass
class TokenizedPair:
    """Token ids of one pair, split as TRL splits them, and truncated to ``max_length``."""

    prompt_ids: list[int]
    chosen_ids: list[int]  # completion tokens of chosen that fit in max_length
    rejected_ids: list[int]
    truncated: bool  # prompt + either completion exceeded max_length


def _common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _is_conversational(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def _encode(tokenizer, prompt, completion=None, add_generation_prompt=False) -> list[int]:
    if _is_conversational(prompt):
        messages = prompt + (completion or [])
        ids = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=add_generation_prompt and completion is None
        )
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    text = prompt if completion is None else prompt + completion
    return tokenizer(text=text)["input_ids"]


def tokenize_pair(tokenizer, prompt, chosen, rejected, max_length: int | None) -> TokenizedPair:
    """Tokenize one pair the way TRL's DPOTrainer does, then truncate like its collator.

    Takes text (or message lists) and the trainer's ``max_length`` (``None``: no truncation); returns a
    :class:`TokenizedPair`. A pair whose prompt alone fills ``max_length`` keeps no completion tokens:
    TRL drops such rows, and :func:`seqpref.data` reports them before training.
    """
    if not _is_conversational(prompt):
        eos = tokenizer.eos_token
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
    prompt_ids = _encode(tokenizer, prompt, add_generation_prompt=True)
    full_chosen = _encode(tokenizer, prompt, chosen)
    full_rejected = _encode(tokenizer, prompt, rejected)
    prompt_len = min(_common_prefix_length(prompt_ids, full_chosen), _common_prefix_length(prompt_ids, full_rejected))
    prompt_ids = prompt_ids[:prompt_len]
    chosen_ids, rejected_ids = full_chosen[prompt_len:], full_rejected[prompt_len:]
    truncated = False
    if max_length is not None:
        room = max(0, max_length - prompt_len)
        truncated = len(chosen_ids) > room or len(rejected_ids) > room
        prompt_ids = prompt_ids[:max_length]
        chosen_ids, rejected_ids = chosen_ids[:room], rejected_ids[:room]
    return TokenizedPair(prompt_ids, chosen_ids, rejected_ids, truncated)
