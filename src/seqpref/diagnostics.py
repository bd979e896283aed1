"""Gradient diagnostics during a stage ≥ 2: is the current objective's gradient aligned with,
orthogonal to, or opposed to each earlier objective's (seed 000's near-orthogonality claim)?

Every ``every`` optimiser steps, right after the backward pass of the step, the probe computes
each earlier objective's DPO loss on a fixed probe batch of its train pairs (same base reference,
same TRL loss) and its gradient on the LoRA parameters with ``torch.autograd.grad``. The cosine
with the current gradient (the ``.grad`` the trainer is about to apply, before clipping) is
accumulated parameter by parameter, so the probe holds at most one extra gradient copy: the earlier
objective's.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch


@dataclass
class DiagnosticsOptions:
    """``diagnostics`` in the config."""

    enabled: bool = True
    every: int = field(default=4, metadata={"help": "Optimiser steps between probes (step 1 is always probed)."})
    batch_size: int = field(default=16, metadata={"help": "Pairs in each earlier objective's probe batch."})

    def __post_init__(self):
        if self.every < 1 or self.batch_size < 1:
            raise ValueError("diagnostics.every and diagnostics.batch_size must be >= 1")


def gradient_cosine(params: list[torch.nn.Parameter], other_grads: tuple[torch.Tensor | None, ...]) -> dict:
    """Cosine and norms between each parameter's ``.grad`` and ``other_grads`` (same order).

    Returns ``{"cosine", "norm_current", "norm_other"}`` as floats; a parameter without a gradient
    on either side counts as zeros. Accumulates in float64 without concatenating the gradients.
    """
    dot = norm_current = norm_other = torch.zeros((), dtype=torch.float64)
    for parameter, other in zip(params, other_grads):
        current = parameter.grad
        if current is not None:
            norm_current = norm_current + current.double().pow(2).sum().cpu()
        if other is not None:
            norm_other = norm_other + other.double().pow(2).sum().cpu()
        if current is not None and other is not None:
            dot = dot + (current.double() * other.double()).sum().cpu()
    norm_current, norm_other = float(norm_current.sqrt()), float(norm_other.sqrt())
    denominator = norm_current * norm_other
    return {
        "cosine": float(dot) / denominator if denominator > 0 else float("nan"),
        "norm_current": norm_current,
        "norm_other": norm_other,
    }


class GradientProbe:
    """Probe batches of the earlier objectives and the rows recorded so far.

    Args:
        earlier: ``(objective, stage, dataset)`` per earlier objective; each dataset has
            prompt/chosen/rejected and the base log-probs as ``ref_chosen_logps`` /
            ``ref_rejected_logps`` (as :func:`seqpref.train.training_dataset` builds it).
        options: :class:`DiagnosticsOptions`.
    """

    def __init__(self, earlier: list[tuple[str, int, object]], options: DiagnosticsOptions):
        self.earlier = earlier
        self.options = options
        self.batches: list[tuple[str, int, dict]] | None = None
        self.rows: list[dict] = []
        self.seconds = 0.0

    def prepare(self, trainer) -> None:
        """Tokenize and collate each earlier objective's probe batch the way the trainer does."""
        self.batches = []
        for objective, stage, dataset in self.earlier:
            dataset = dataset.select(range(min(self.options.batch_size, len(dataset))))
            dataset = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, f"probe {objective}")
            batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
            self.batches.append((objective, stage, batch))

    def due(self, step: int) -> bool:
        """Whether optimiser step ``step`` (1-based) is probed."""
        return step == 1 or step % self.options.every == 0

    def record(self, trainer, model, step: int) -> None:
        """Append one row per earlier objective for the gradient now in ``model``'s ``.grad``."""
        from seqpref.train import lora_dropout_off

        start = time.perf_counter()
        if self.batches is None:
            self.prepare(trainer)
        params = [p for p in model.parameters() if p.requires_grad]
        # the probe's own loss must not leak into the trainer's logged metrics
        metrics, tokens = copy.deepcopy(trainer._metrics), trainer._total_train_tokens
        spo, trainer.spo = getattr(trainer, "spo", None), None  # probe the earlier objectives' DPO loss
        for objective, stage, batch in self.batches:
            inputs = trainer._prepare_inputs(batch)
            with trainer.compute_loss_context_manager(), lora_dropout_off(model):  # deterministic, draws no RNG
                loss = trainer.compute_loss(model, inputs)
            other = torch.autograd.grad(loss, params, allow_unused=True)
            row = gradient_cosine(params, other)
            del other
            self.rows.append({"step": step, "other_objective": objective, "other_stage": stage, **row})
        trainer._metrics, trainer._total_train_tokens, trainer.spo = metrics, tokens, spo
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        for row in self.rows[-len(self.batches):]:
            row["seconds"] = elapsed / len(self.batches)
