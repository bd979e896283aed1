"""Gradient diagnostics during a stage ≥ 2: is the current objective's gradient aligned with,
orthogonal to, or opposed to each earlier objective's (seed 000's near-orthogonality claim), and is
that cosine any different from what two independent minibatches of one objective give?

Every ``every`` optimiser steps, right after the backward pass of the step, the probe computes, on
the LoRA parameters with ``torch.autograd.grad`` (same base reference, same TRL loss):

- ``cross``: cos(current gradient, earlier objective's gradient on a fixed probe batch A of its train
  pairs); the current gradient is the ``.grad`` the trainer is about to apply (before clipping).
- ``floor_current``: cos(current gradient, the current objective's gradient on another batch of its
  train pairs, none of them in this step's minibatch): the noise floor on the current side, the same
  batch sizes as ``cross``.
- ``floor_other``: cos(the earlier objective on a disjoint batch B of the step's size, the same
  objective on batch A): the noise floor on the earlier side.

All three compare a gradient over the step's number of pairs (batch size × accumulation) with one over
``batch_size`` pairs, so their expected values under pure minibatch noise match.

The current gradient must be measured like the probes' for the comparison to mean anything. The
probes run with LoRA dropout off and without a method's own loss term; and a ``replay`` step also
trains the earlier objectives' replayed pairs, possibly the very pairs of probe batch A, which would
inflate ``cross``. So wherever the step's ``.grad`` is not that (``recompute_current``: LoRA dropout on,
a method loss term such as SPO's penalty, or replayed pairs in the step), the current gradient is
recomputed on the step's *own objective's* pairs alone, dropout off, DPO only — one extra forward and
backward of the step's pairs per probe — and ``cross`` and ``floor_current`` use it; the gradient the
optimiser applied is kept beside them as ``cross_step`` (cos(applied step, batch A)).

In millions of dimensions two minibatch gradients of the *same* objective are far from parallel; a
cross-objective cosine of 0.02 means "near-orthogonal" only if the floors are well above it. The
floors cost one extra forward/backward per objective per probe; the probe holds at most two extra
gradient copies (an earlier objective's A and B).
"""

from __future__ import annotations

import copy
import time

import torch

from seqpref.lora import lora_dropout_off
from seqpref.options import DiagnosticsOptions


def gradient_cosine(params: list[torch.nn.Parameter], other_grads: tuple[torch.Tensor | None, ...]) -> dict:
    """Cosine and norms between each parameter's ``.grad`` and ``other_grads`` (same order).

    Returns ``{"cosine", "norm_current", "norm_other"}`` as floats; a parameter without a gradient
    on either side counts as zeros. Accumulates in float64 without concatenating the gradients.
    """
    return cosine_between([p.grad for p in params], other_grads)


def cosine_between(first, second) -> dict:
    """Cosine and norms of two gradients given as same-order sequences of tensors (None = zeros):
    ``{"cosine", "norm_current" (first's), "norm_other" (second's)}``, accumulated in float64."""
    dot = norm_current = norm_other = torch.zeros((), dtype=torch.float64)
    for current, other in zip(first, second):
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
    """Probe batches of the current and earlier objectives, and the rows recorded so far.

    Args:
        earlier: ``(objective, stage, dataset)`` per earlier objective; each dataset has
            prompt/chosen/rejected and the base log-probs as ``ref_chosen_logps`` /
            ``ref_rejected_logps`` (as :func:`seqpref.dpo_trainer.training_dataset` builds it).
        options: :class:`DiagnosticsOptions`.
        current: ``(objective, stage, dataset)`` of the objective this stage trains (its train pairs),
            for the current-side noise floor; None records no ``floor_current`` rows.
    """

    def __init__(
        self,
        earlier: list[tuple[str, int, object]],
        options: DiagnosticsOptions,
        current=None,
        recompute_current: bool = False,
    ):
        self.earlier = earlier
        self.current = current
        self.options = options
        # recompute the current gradient on the step's own pairs (dropout off, DPO only): module docstring
        self.recompute_current = recompute_current and current is not None
        self.own = None  # (prepared dataset, key -> row) of every current-objective pair, when recomputing
        self.batches: list[tuple[str, int, dict, dict | None]] | None = None
        self.pool = None  # (dataset, keys) of the current objective's candidate pairs
        self.window: set = set()  # pair keys of the optimiser step's micro-batches so far
        self.rows: list[dict] = []
        self.seconds = 0.0

    @staticmethod
    def pair_keys(batch: dict) -> list[tuple]:
        """One key per pair of a collated DPO batch (rows ``[:B]`` chosen, ``[B:]`` rejected): the
        non-padding token ids of its chosen and rejected sequences."""
        ids, mask = batch["input_ids"].cpu(), batch["attention_mask"].cpu().bool()
        half = ids.shape[0] // 2
        return [(tuple(ids[i][mask[i]].tolist()), tuple(ids[half + i][mask[half + i]].tolist())) for i in range(half)]

    def _collate(self, trainer, dataset, name: str):
        dataset = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, name)
        return dataset, trainer.data_collator([dataset[i] for i in range(len(dataset))])

    def prepare(self, trainer) -> None:
        """Tokenize and collate the probe batches the way the trainer does: per earlier objective, batch
        A (its first ``batch_size`` train pairs) and the disjoint batch B (the next batch size ×
        accumulation ones, the step's size); and the pool the current objective's floor batch is drawn
        from (its first ``batch_size`` + step-size pairs)."""
        size = self.options.batch_size
        per_step = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
        self.batches = []
        for objective, stage, dataset in self.earlier:
            first = self._collate(trainer, dataset.select(range(min(size, len(dataset)))), f"probe {objective}")[1]
            second = None
            if len(dataset) > size:
                rest = dataset.select(range(size, min(size + per_step, len(dataset))))
                second = self._collate(trainer, rest, f"probe {objective} (floor)")[1]
            self.batches.append((objective, stage, first, second))
        if self.current is not None:
            _, _, dataset = self.current
            pool = dataset.select(range(min(size + per_step, len(dataset))))
            prepared, collated = self._collate(trainer, pool, "probe current (floor)")
            self.pool = (prepared, self.pair_keys(collated))
        if self.recompute_current:
            _, _, dataset = self.current
            prepared = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, "probe current (step)")
            index = {}
            for start in range(0, len(prepared), 64):  # keys chunk by chunk: never the whole set padded at once
                rows = list(range(start, min(start + 64, len(prepared))))
                for row, key in zip(rows, self.pair_keys(trainer.data_collator([prepared[i] for i in rows]))):
                    index.setdefault(key, row)
            self.own = (prepared, index)

    def _own_step_batch(self, trainer):
        """The step's pairs of the current objective (replayed pairs left out), collated; None if none."""
        prepared, index = self.own
        rows = sorted(index[key] for key in self.window if key in index)
        return trainer.data_collator([prepared[i] for i in rows]) if rows else None

    def observe(self, inputs: dict) -> None:
        """Note the pairs of a micro-batch the trainer is about to train on (the floor batch avoids them;
        a recomputed current gradient is taken over the current objective's among them)."""
        if self.current is not None:
            self.window.update(self.pair_keys(inputs))

    def end_step(self) -> None:
        """Forget the finished optimiser step's pairs."""
        self.window = set()

    def due(self, step: int) -> bool:
        """Whether optimiser step ``step`` (1-based) is probed."""
        return step == 1 or step % self.options.every == 0

    def _current_floor_batch(self, trainer):
        """The current objective's floor batch: the first ``batch_size`` pool pairs not in this step."""
        dataset, keys = self.pool
        picked = [i for i, key in enumerate(keys) if key not in self.window][: self.options.batch_size]
        return trainer.data_collator([dataset[i] for i in picked]) if picked else None

    def record(self, trainer, model, step: int) -> None:
        """Append the ``cross``, ``floor_current`` and ``floor_other`` rows for the gradient now in
        ``model``'s ``.grad`` (see the module docstring)."""
        start = time.perf_counter()
        if self.batches is None:
            self.prepare(trainer)
        params = [p for p in model.parameters() if p.requires_grad]
        current_pairs = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
        # the probe's own loss must not leak into the trainer's logged metrics
        metrics, tokens = copy.deepcopy(trainer._metrics), trainer._total_train_tokens
        # probe the objectives' DPO loss, without a method's own term (SPO's penalty)
        method_loss, trainer.method_loss = getattr(trainer, "method_loss", None), None

        def gradient(batch):
            inputs = trainer._prepare_inputs(batch)
            with trainer.compute_loss_context_manager(), lora_dropout_off(model):  # deterministic, draws no RNG
                loss = trainer.compute_loss(model, inputs)
            return torch.autograd.grad(loss, params, allow_unused=True)

        def pairs(batch):
            return batch["input_ids"].shape[0] // 2

        applied = [p.grad for p in params]  # the gradient the optimiser is about to apply
        current = applied
        if self.recompute_current:
            own = self._own_step_batch(trainer)
            if own is not None:
                current, current_pairs = gradient(own), pairs(own)

        rows = []
        if self.current is not None:
            name, stage, _ = self.current
            batch = self._current_floor_batch(trainer)
            if batch is not None:
                other = gradient(batch)
                rows.append(
                    {
                        "kind": "floor_current",
                        "other_objective": name,
                        "other_stage": stage,
                        "n_current": current_pairs,
                        "n_other": pairs(batch),
                        **cosine_between(current, other),
                    }
                )
                del other
        for objective, stage, first, second in self.batches:
            other = gradient(first)
            rows.append(
                {
                    "kind": "cross",
                    "other_objective": objective,
                    "other_stage": stage,
                    "n_current": current_pairs,
                    "n_other": pairs(first),
                    **cosine_between(current, other),
                }
            )
            if current is not applied:
                rows.append(
                    {
                        "kind": "cross_step",
                        "other_objective": objective,
                        "other_stage": stage,
                        "n_current": trainer.args.per_device_train_batch_size
                        * trainer.args.gradient_accumulation_steps,
                        "n_other": pairs(first),
                        **cosine_between(applied, other),
                    }
                )
            if second is not None:
                again = gradient(second)
                rows.append(
                    {
                        "kind": "floor_other",
                        "other_objective": objective,
                        "other_stage": stage,
                        "n_current": pairs(second),
                        "n_other": pairs(first),
                        **cosine_between(again, other),
                    }
                )
                del again
            del other
        trainer._metrics, trainer._total_train_tokens, trainer.method_loss = metrics, tokens, method_loss
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        for row in rows:
            self.rows.append({"step": step, **row, "seconds": elapsed / len(rows)})
