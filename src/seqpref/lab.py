"""The lab: a seeded synthetic world of prompts and responses whose attributes are known.

A prompt asks about a topic; a response is ``<opener> <content> <closer>``, and each part is an
attribute with two values:

========== ================================== =========================================
attribute  values                             surface text
========== ================================== =========================================
opener     ``comply`` / ``refuse``            "sure , " / "sorry , "
content    ``safe`` / ``unsafe``              topic words / words from a harm list
closer     ``warm`` / ``curt``                "glad to help !" / "that is all ."
========== ================================== =========================================

An objective prefers one value of one or more attributes (:class:`LabObjective`): its chosen
response carries the preferred value and its rejected response the other, while every attribute
it does not mention is drawn at random and shared by both. Relationships between two objectives
then hold by construction: preferring ``opener: comply`` and ``opener: refuse`` conflict; ``closer``
and ``opener`` are independent; an objective that prefers ``closer: warm`` and, in most pairs, also
``opener: comply`` is compatible with one that prefers ``opener: comply``; ``content`` changes many
tokens at once, so an objective on it is a strong, large-margin signal.

Everything is drawn from ``numpy.random.default_rng`` seeded from the lab seed and the names
involved (:func:`stable_seed`), so the same config gives the same bytes.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TOPICS: dict[str, list[str]] = {
    "garden": ["soil", "seed", "water", "bloom", "root", "leaf", "sun", "rake"],
    "ocean": ["wave", "tide", "shell", "reef", "salt", "fish", "boat", "sand"],
    "kitchen": ["bread", "salt", "oven", "spoon", "soup", "flour", "pan", "herb"],
    "music": ["drum", "song", "note", "beat", "choir", "tune", "piano", "voice"],
    "forest": ["tree", "moss", "deer", "trail", "pine", "bark", "owl", "stream"],
    "city": ["street", "train", "park", "tower", "bridge", "market", "bus", "square"],
    "space": ["star", "orbit", "moon", "comet", "planet", "rocket", "dust", "light"],
    "school": ["book", "lesson", "chalk", "class", "exam", "paper", "desk", "teacher"],
}
UNSAFE_WORDS = ["poison", "weapon", "steal", "hack", "burn", "harm", "threat", "fraud", "smash", "trap"]
QUESTIONS = ["tell me about", "explain", "describe", "what do you know about", "teach me about"]

ATTRIBUTES: dict[str, tuple[str, str]] = {
    "opener": ("comply", "refuse"),
    "content": ("safe", "unsafe"),
    "closer": ("warm", "curt"),
}
_OPENER_TEXT = {"comply": "sure ,", "refuse": "sorry ,"}
_CLOSER_TEXT = {"warm": "glad to help !", "curt": "that is all ."}


def stable_seed(*parts) -> int:
    """A 32-bit seed from ``parts`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


@dataclass
class LabObjective:
    """One synthetic preference objective of the lab.

    Args:
        prefer: attribute → preferred value, e.g. ``{"opener": "comply"}``. Its order does not matter
            (configs pass through sorted JSON; pairs are drawn attribute by attribute in name order).
        differ: attribute → share of pairs (0..1) in which that preferred attribute differs between
            chosen and rejected; in the other pairs both responses share a random value. Defaults to 1
            for each; at least one preferred attribute must keep 1, so that every pair differs.
        label_noise: share of pairs whose chosen and rejected are swapped (a weaker signal).
    """

    prefer: dict[str, str]
    differ: dict[str, float] = field(default_factory=dict)
    label_noise: float = 0.0

    def __post_init__(self):
        if not self.prefer:
            raise ValueError("a lab objective needs at least one attribute in 'prefer'")
        for attribute, value in self.prefer.items():
            if attribute not in ATTRIBUTES:
                raise ValueError(f"unknown lab attribute {attribute!r}; expected one of {sorted(ATTRIBUTES)}")
            if value not in ATTRIBUTES[attribute]:
                raise ValueError(f"lab attribute {attribute!r} has values {ATTRIBUTES[attribute]}, got {value!r}")
        for attribute, share in self.differ.items():
            if attribute not in self.prefer:
                raise ValueError(f"'differ' names {attribute!r}, which is not in 'prefer'")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"'differ' share of {attribute!r} must be in [0, 1], got {share}")
        if all(self.differ.get(attribute, 1.0) < 1.0 for attribute in self.prefer):
            raise ValueError(
                f"every attribute of 'prefer' has a 'differ' share below 1 ({self.differ}): at least one "
                "must differ in every pair, or some pairs would have chosen == rejected"
            )
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5), got {self.label_noise}")


def _other(attribute: str, value: str) -> str:
    first, second = ATTRIBUTES[attribute]
    return second if value == first else first


def _prompt(rng: np.random.Generator) -> tuple[str, str]:
    topic = list(TOPICS)[rng.integers(len(TOPICS))]
    question = QUESTIONS[rng.integers(len(QUESTIONS))]
    return topic, f"user : {question} the {topic} ? assistant :"


def _content_words(rng: np.random.Generator, topic: str, kind: str) -> list[str]:
    pool = TOPICS[topic] if kind == "safe" else UNSAFE_WORDS
    return list(rng.choice(pool, size=int(rng.integers(3, 6)), replace=False))


def render_response(attributes: dict[str, str], words: list[str]) -> str:
    """The response text (with a leading space, so it joins the prompt on a token boundary)."""
    content = " ".join(words)
    return f" {_OPENER_TEXT[attributes['opener']]} {content} . {_CLOSER_TEXT[attributes['closer']]}"


def _random_attributes(rng: np.random.Generator) -> dict[str, str]:
    return {name: values[rng.integers(2)] for name, values in ATTRIBUTES.items()}


def make_pairs(objective: LabObjective, n: int, seed: int, id_prefix: str) -> pd.DataFrame:
    """Draw ``n`` preference pairs of ``objective``.

    Returns a DataFrame with the ``tables.PAIRS`` columns: ``pair_id`` (``"{id_prefix}-{i:05d}"``),
    ``prompt``, ``prompt_messages`` (null: lab prompts are plain text), ``chosen``, ``rejected`` and ``source`` (JSON of the pair's attributes and whether its label was swapped).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic, prompt = _prompt(rng)
        shared = _random_attributes(rng)
        chosen, rejected = dict(shared), dict(shared)
        for attribute, value in sorted(objective.prefer.items()):  # name order: the config's order is not kept
            share = objective.differ.get(attribute, 1.0)
            if rng.random() < share:
                chosen[attribute], rejected[attribute] = value, _other(attribute, value)
        words_chosen = _content_words(rng, topic, chosen["content"])
        if chosen["content"] == rejected["content"]:
            words_rejected = words_chosen
        else:
            words_rejected = _content_words(rng, topic, rejected["content"])
        swapped = bool(rng.random() < objective.label_noise)
        text_w, text_l = render_response(chosen, words_chosen), render_response(rejected, words_rejected)
        if swapped:
            chosen, rejected, text_w, text_l = rejected, chosen, text_l, text_w
        source = {"topic": topic, "chosen": chosen, "rejected": rejected, "label_swapped": swapped}
        rows.append((f"{id_prefix}-{i:05d}", prompt, None, text_w, text_l, json.dumps(source, sort_keys=True)))
    return pd.DataFrame(rows, columns=["pair_id", "prompt", "prompt_messages", "chosen", "rejected", "source"])


def pretraining_corpus(n: int, seed: int) -> list[str]:
    """``n`` prompt + response texts with every attribute drawn uniformly: what the base model learns.

    Because no attribute value is favoured, the pretrained base has no preference of its own, and
    every objective starts near a zero margin.
    """
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n):
        topic, prompt = _prompt(rng)
        attributes = _random_attributes(rng)
        texts.append(prompt + render_response(attributes, _content_words(rng, topic, attributes["content"])))
    return texts
