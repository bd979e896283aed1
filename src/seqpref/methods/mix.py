"""mix: each optimiser step descends Σ_o w_o·L_o on one batch of every objective (seed 001's Mix
baseline; one forward/backward per objective, each L_o TRL's DPO loss against the base model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqpref.methods.base import JOINT, Method
from seqpref.methods.weights import check_weights, weights_for_setting, every_objective, weights_field


@dataclass
class MixOptions:
    """``method_options.mix``."""

    weights: dict[str, float] = weights_field()

    def __post_init__(self):
        check_weights("mix", self.weights)

    for_setting = staticmethod(weights_for_setting)


def mix_loss(losses: list, weights: np.ndarray):
    """Mix's loss Σ_o w_o·L_o of per-objective scalar losses (a 0-d tensor with their graphs)."""
    return sum(float(w) * loss for w, loss in zip(weights, losses))


def loss(trainer, model, parts: dict, step: int, position: int):
    """A micro-batch's loss: the weighted sum of every objective's DPO loss; every objective stepped."""
    present = sorted(parts)
    total = mix_loss([trainer.objective_loss(model, o, parts[o]) for o in present], trainer.joint.weights[present])
    return total, set(present)


METHOD = Method(name="mix", kind=JOINT, options=MixOptions, colour="#009E73",
                summary="joint: Σ w·L_DPO on a batch of every objective", plan=every_objective, loss=loss)
