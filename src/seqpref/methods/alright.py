"""alright (ALRIGHT, seed 001): each optimiser step draws one objective o ~ Categorical(w) and takes a
DPO step on a batch of it; only o's batch stream advances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqpref.methods.base import JOINT, Method
from seqpref.methods.weights import check_weights, weights_field, weights_for_setting


@dataclass
class AlrightOptions:
    """``method_options.alright``."""

    weights: dict[str, float] = weights_field()

    def __post_init__(self):
        check_weights("alright", self.weights)

    for_setting = staticmethod(weights_for_setting)


def alright_draws(weights: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """ALRIGHT's objective per optimiser step: ``steps`` draws from Categorical(``weights``), int (steps,)."""
    return np.random.default_rng(seed).choice(len(weights), size=steps, p=weights)


def step_plan(n_objectives: int, steps: int, weights: np.ndarray, seed: int) -> list[list[int]]:
    """Each optimiser step receives the batch of ALRIGHT's draw alone."""
    return [[int(o)] for o in alright_draws(weights, steps, seed)]


def loss(trainer, model, parts: dict, step: int, position: int):
    """A micro-batch's loss: the drawn objective's DPO loss (the sampler gives it every micro-batch of the step)."""
    ((o, batch),) = parts.items()
    return trainer.objective_loss(model, o, batch), {o}


METHOD = Method(
    name="alright",
    kind=JOINT,
    options=AlrightOptions,
    colour="#E69F00",
    summary="joint: one objective per step, drawn with probability w",
    plan=step_plan,
    loss=loss,
)
