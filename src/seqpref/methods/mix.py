"""mix: each optimiser step descends Σ_o w_o·L_o on one batch of every objective (seed 001's Mix
baseline; one forward/backward per objective, each L_o TRL's DPO loss against the base model).

By default each objective's batch has ``train.batch_size`` pairs, so a mix step sees n times the pairs of
a sequential step (n objectives); with ``equal_pairs`` each has ``batch_size / n``, the sequential step's
pairs in all (:func:`objective_batch_size`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqpref.methods.base import JOINT, Method
from seqpref.methods.weights import check_weights, every_objective, weights_field, weights_for_setting


@dataclass
class MixOptions:
    """``method_options.mix``."""

    weights: dict[str, float] = weights_field()
    equal_pairs: bool = field(
        default=False,
        metadata={
            "help": "batch_size / n pairs of each of n objectives per micro-batch (a sequential step's pairs), not batch_size of each."
        },
    )

    def __post_init__(self):
        check_weights("mix", self.weights)

    for_setting = staticmethod(weights_for_setting)


def mix_loss(losses: list, weights: np.ndarray):
    """Mix's loss Σ_o w_o·L_o of per-objective scalar losses (a 0-d tensor with their graphs)."""
    return sum(float(w) * loss for w, loss in zip(weights, losses))


def objective_batch_size(options: MixOptions, batch_size: int, n_objectives: int) -> int:
    """Pairs of each objective in a mix micro-batch: ``batch_size``, or with ``options.equal_pairs``
    ``batch_size / n_objectives`` (a ``ValueError`` when it does not divide: the step would not see a
    sequential step's pairs)."""
    if not options.equal_pairs:
        return batch_size
    if batch_size % n_objectives:
        raise ValueError(
            f"mix.equal_pairs: train.batch_size {batch_size} does not divide among {n_objectives} "
            f"objectives; choose a multiple of {n_objectives}"
        )
    return batch_size // n_objectives


def loss(trainer, model, parts: dict, step: int, position: int):
    """A micro-batch's loss: the weighted sum of every objective's DPO loss; every objective stepped."""
    present = sorted(parts)
    total = mix_loss([trainer.objective_loss(model, o, parts[o]) for o in present], trainer.joint.weights[present])
    return total, set(present)


METHOD = Method(
    name="mix",
    kind=JOINT,
    options=MixOptions,
    colour="#009E73",
    summary="joint: Σ w·L_DPO on a batch of every objective",
    plan=every_objective,
    loss=loss,
    batch_size=objective_batch_size,
)
