"""Objective weights of the joint methods (``method_options.<method>.weights``)."""

from __future__ import annotations

from dataclasses import field

import numpy as np


def weights_field():
    """The ``weights`` option every joint method has: objective → w (missing = 1), normalised per setting."""
    return field(
        default_factory=dict,
        metadata={
            "help": "objective → w (missing = 1), normalised to sum 1 per setting.",
            "schema": {"additionalProperties": {"type": "number", "exclusiveMinimum": 0}},
        },
    )


def check_weights(method: str, weights: dict[str, float]) -> None:
    """Raise ``ValueError`` naming ``method`` unless every weight is > 0."""
    if any(w <= 0 for w in weights.values()):
        raise ValueError(f"{method}.weights must be > 0, got {weights}")


def normalised_weights(names: list[str], weights: dict[str, float]) -> np.ndarray:
    """w_o for ``names`` (in order): the configured weight (1 if absent), scaled to sum 1; shape (n,).
    Weights of other objectives (of other settings) are ignored."""
    raw = np.array([float(weights.get(name, 1.0)) for name in names])
    return raw / raw.sum()


def every_objective(n_objectives: int, steps: int, weights: np.ndarray, seed: int) -> list[list[int]]:
    """A step plan in which every optimiser step receives a batch of every objective (mix, maxright)."""
    return [list(range(n_objectives)) for _ in range(steps)]


def weights_for_setting(block: dict, setting: str, objectives: list[str]) -> dict:
    """A joint method's options block with only ``objectives``' weights (a weight of another setting's
    objective retrains nothing here)."""
    return {**block, "weights": {k: w for k, w in block.get("weights", {}).items() if k in objectives}}
