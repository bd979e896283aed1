"""maxright (MAXRIGHT, seed 001): each optimiser step descends the objective with the largest weighted
gap w_o·(L_o − f*_o), Chebyshev scalarisation of the trade-off.

Every ``eval_every`` optimiser steps all gaps are recomputed on the step's (first micro-)batches without
gradient; otherwise only the stepped objective's gap is refreshed from its pre-update loss (the mean
over the step's micro-batches) and the others stay stale, as in the paper's code. Under gradient
accumulation the pick is made once per optimiser step, so one step never mixes objectives. f*_o is the
eval DPO loss (:func:`seqpref.metrics.dpo_eval_loss`) of the single-objective run of o: stage 1 of the
``dpo`` order that starts with o (a DAG dependency), unless the config types it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from seqpref.methods.base import JOINT, Method
from seqpref.methods.weights import check_weights, every_objective, weights_field, weights_for_setting
from seqpref.options import JOINT_SEPARATOR

log = logging.getLogger("seqpref.methods.maxright")


@dataclass
class MaxrightOptions:
    """``method_options.maxright``, resolved for one setting (``optimum`` is that setting's)."""

    weights: dict[str, float] = weights_field()
    eval_every: int = field(
        default=10,
        metadata={"help": "optimiser steps between re-evaluations of every gap (k).", "schema": {"minimum": 1}},
    )
    optimum: dict = field(
        default_factory=dict,
        metadata={
            "help": "f*_o typed in the config, overriding the single-objective run's; {setting: {objective: loss}} "
            "in the config, {objective: loss} once resolved for a setting.",
            "schema": {
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}
            },
        },
    )

    def __post_init__(self):
        check_weights("maxright", self.weights)
        if self.eval_every < 1:
            raise ValueError(f"maxright.eval_every must be >= 1, got {self.eval_every}")

    @staticmethod
    def for_setting(block: dict, setting: str, objectives: list[str]) -> dict:
        """This setting's weights and its typed f* only."""
        return {**weights_for_setting(block, setting, objectives), "optimum": block.get("optimum", {}).get(setting, {})}


def weighted_gaps(losses: np.ndarray, optimum: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MAXRIGHT's gaps w_o·(L_o − f*_o), shape (n,) (loss units, nats)."""
    return weights * (np.asarray(losses, dtype=float) - optimum)


def maxright_pick(gaps: np.ndarray) -> int:
    """The objective MAXRIGHT steps on: argmax of the weighted gaps (the first on a tie)."""
    return int(np.argmax(gaps))


def optimum(options: MaxrightOptions, names: list[str], optimum_scores: dict[str, str] | None) -> np.ndarray:
    """f*_o for ``names`` (nats), shape (n,): the typed value, else the eval DPO loss of the stage-1
    score file in ``optimum_scores[name]``; a ``ValueError`` names the objectives that have neither."""
    import pandas as pd

    from seqpref.metrics import dpo_eval_loss

    optimum_scores = optimum_scores or {}
    missing = [n for n in names if n not in options.optimum and n not in optimum_scores]
    if missing:
        raise ValueError(f"maxright needs f* of {missing}: a stage-1 score file or a configured optimum")
    return np.array(
        [
            options.optimum[n] if n in options.optimum else dpo_eval_loss(pd.read_parquet(optimum_scores[n]), n)
            for n in names
        ]
    )


@dataclass
class MaxrightState:
    """What MAXRIGHT keeps between the micro-batches of a stage, saved in its checkpoints: f*_o
    ``optimum`` (n,), the weighted ``gaps`` (n,) (None before the first evaluation), the ``pick``
    (the objective of the current optimiser step), its micro-batch losses so far in that step, and the
    steps at which every gap was re-evaluated."""

    optimum: np.ndarray
    gaps: np.ndarray | None = None
    pick: int | None = None
    step_losses: list[float] = field(default_factory=list)
    refresh_steps: list[int] = field(default_factory=list)

    @classmethod
    def start(
        cls, options: MaxrightOptions, names: list[str], single_objective: dict[str, str] | None
    ) -> "MaxrightState":
        """The state at a stage's start: f* from :func:`optimum` (``single_objective`` maps an objective
        to its single-objective run's stage-1 score file)."""
        f_star = optimum(options, names, single_objective)
        log.info("maxright f*: %s", dict(zip(names, f_star.round(4).tolist())))
        return cls(optimum=f_star)

    def saved(self) -> dict:
        """The state as JSON-ready values (a checkpoint's)."""
        return {
            "optimum": self.optimum.tolist(),
            "gaps": None if self.gaps is None else self.gaps.tolist(),
            "pick": self.pick,
            "step_losses": self.step_losses,
            "refresh_steps": self.refresh_steps,
        }

    @classmethod
    def restored(cls, saved: dict) -> "MaxrightState":
        """The state :meth:`saved` wrote."""
        gaps = None if saved["gaps"] is None else np.array(saved["gaps"])
        return cls(np.array(saved["optimum"]), gaps, saved["pick"], saved["step_losses"], saved["refresh_steps"])

    def recorded(self, names: list[str]) -> dict:
        """What the stage's adapter record notes of the state: f* by objective."""
        return {"optimum": dict(zip(names, self.optimum.tolist()))}


def loss(trainer, model, parts: dict, step: int, position: int):
    """A micro-batch's loss: the picked objective's DPO loss. At a step's first micro-batch the pick is
    made (every gap re-evaluated first when ``step`` is a multiple of ``eval_every``); at its last, the
    stepped objective's gap is refreshed from the mean of its micro-batch losses. Gaps are logged as
    ``NAME::joint/gap``."""
    import torch

    from seqpref.lora import lora_dropout_off

    joint, state, present = trainer.joint, trainer.method_state, sorted(parts)
    accumulation = joint.sampler.accumulation
    if position == 0:
        if state.gaps is None or step % joint.options.eval_every == 0:
            with torch.no_grad(), lora_dropout_off(model):
                losses = [trainer.objective_loss(model, o, parts[o], keep_metrics=False).item() for o in present]
            state.gaps = weighted_gaps(losses, state.optimum, joint.weights)
            state.refresh_steps.append(step)
        state.pick = maxright_pick(state.gaps)
        state.step_losses = []
    o = state.pick
    total = trainer.objective_loss(model, o, parts[o])
    state.step_losses.append(total.item())
    if position == accumulation - 1:
        state.gaps[o] = joint.weights[o] * (float(np.mean(state.step_losses)) - state.optimum[o])
    for i, name in enumerate(joint.names):
        trainer.record_metric(f"{name}{JOINT_SEPARATOR}joint/gap", float(state.gaps[i]))
    return total, {o}


METHOD = Method(
    name="maxright",
    kind=JOINT,
    options=MaxrightOptions,
    colour="#D55E00",
    summary="joint: the objective with the largest weighted gap to its optimum",
    plan=every_objective,
    loss=loss,
    state=MaxrightState.start,
    single_objective="scores",
)
