"""Joint methods: every objective of a setting trained at once, with the sequential runs' budget.

Seed 001 (Fernando, Shen, Ram, Zhou, Samulowitz, Baracaldo and Chen, "Understanding Forgetting in
LLM SFT and Preference Learning – A Convex Optimization Perspective", arXiv 2410.15483, earlier
titled "Mitigating Forgetting in LLM Supervised Fine-Tuning and Preference Learning"; code: XRIGHT;
papers.md §2.2) trains two objectives together instead of one after the other. We apply its three
methods to preference objectives, every loss a DPO loss against the base model (docs/design.md,
"Methods"). Each is a module of the method registry, which this trainer runs: ``mix``
(:mod:`seqpref.methods.mix`), ``alright`` (:mod:`seqpref.methods.alright`) and ``maxright``
(:mod:`seqpref.methods.maxright`); a joint method gives the objectives each optimiser step receives
(its ``plan``) and the micro-batch loss from their batches (its ``loss``).

A joint run has the sequential runs' stage columns: its stage k takes as many optimiser steps as a
sequential stage on the k-th objective (config order), continues stage k−1's adapter, and is scored
like any stage. ``python -m seqpref.joint BASE OUT_DIR TRAIN_LOG --stage K --objective NAME PAIRS
BASE_LOGPS ... --options JSON --method-options JSON --run JSON [--previous DIR] [--optimum NAME SCORES]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from seqpref import dpo_trainer, methods, train
from seqpref.checkpoints import stop_on_signals
from seqpref.methods.weights import normalised_weights
from seqpref.options import JOINT_SEPARATOR, TrainOptions
from seqpref.plan import stage_seed

log = logging.getLogger("seqpref.joint")


class JointBatchSampler(torch.utils.data.Sampler):
    """Batches of a concatenated dataset of several objectives, following a step plan.

    ``sizes[o]`` rows of objective o start at ``offsets[o]``. Each objective has its own stream of
    shuffled indices (reshuffled when used up, seeded), so an objective's batches only advance on the
    steps that use it. Micro-batch m of optimiser step m // accumulation holds ``batch_size`` rows of
    each objective in ``plan[m // accumulation]``, objectives in plan order.
    """

    def __init__(self, sizes: list[int], batch_size: int, plan: list[list[int]], seed: int, accumulation: int = 1):
        self.sizes, self.batch_size, self.plan, self.seed, self.accumulation = (
            sizes,
            batch_size,
            plan,
            seed,
            accumulation,
        )
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)

    def __len__(self) -> int:
        return len(self.plan) * self.accumulation

    def __iter__(self):
        rngs = [np.random.default_rng([self.seed, o]) for o in range(len(self.sizes))]
        streams: list[list[int]] = [[] for _ in self.sizes]
        for m in range(len(self)):
            batch = []
            for o in self.plan[m // self.accumulation]:
                while len(streams[o]) < self.batch_size:
                    streams[o].extend((self.offsets[o] + rngs[o].permutation(self.sizes[o])).tolist())
                batch += streams[o][: self.batch_size]
                del streams[o][: self.batch_size]
            yield batch


class JointCollator:
    """Wrap TRL's preference collator: split a micro-batch by its ``objective`` column and collate
    each part separately, giving ``{"parts": {objective index: TRL batch}}`` in batch order."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        groups: dict[int, list[dict]] = {}
        for example in examples:
            example = dict(example)
            groups.setdefault(int(example.pop("objective")), []).append(example)
        return {"parts": {o: self.collator(rows) for o, rows in groups.items()}}


@dataclass
class JointPlan:
    """What a joint trainer needs: the method (registry record) and its options, objective names,
    normalised weights and the batch sampler."""

    method: methods.Method
    names: list[str]
    weights: np.ndarray
    sampler: "JointBatchSampler"
    options: object = None


def joint_trainer_class():
    """The joint trainer class (built on first use, as :func:`seqpref.dpo_trainer.trainer_class`)."""
    base = dpo_trainer.trainer_class()

    class JointDPOTrainer(base):
        """The base-reference DPO trainer, fed by a :class:`JointBatchSampler` and combining the
        per-objective DPO losses as ``plan.method`` says. Per-objective TRL metrics are logged as
        ``NAME::metric``, plus ``NAME::joint/stepped`` (1 when the step descended NAME's loss) and,
        for maxright, ``NAME::joint/gap``."""

        def __init__(self, *args, joint: JointPlan, **kwargs):
            super().__init__(*args, **kwargs)
            self.joint = joint
            self.micro_batches = 0
            self.stepped_counts = np.zeros(len(joint.names), dtype=int)  # micro-batches that descended each loss
            self.micro_stepped: list[list[int]] = []  # objectives each micro-batch descended, in order

        def stage_state(self) -> dict:
            """The base state (the method's own state included) plus the per-micro-batch bookkeeping."""
            return {
                **super().stage_state(),
                "micro_batches": self.micro_batches,
                "stepped_counts": self.stepped_counts.tolist(),
                "micro_stepped": self.micro_stepped,
            }

        def load_stage_state(self, state: dict) -> None:
            super().load_stage_state(state)
            self.micro_batches = state["micro_batches"]
            self.stepped_counts = np.array(state["stepped_counts"], dtype=int)
            self.micro_stepped = state["micro_stepped"]

        def get_train_dataloader(self):
            self._set_signature_columns_if_needed()
            dataset = self.train_dataset.select_columns(self._signature_columns + ["objective"])
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=self.joint.sampler, collate_fn=JointCollator(self.data_collator)
            )
            return self.accelerator.prepare(loader)

        def count_budget(self, inputs) -> None:
            """Nothing here: each objective's batch is counted where its loss is computed (:meth:`objective_loss`)."""

        def objective_loss(self, model, o: int, batch: dict, keep_metrics: bool = True) -> torch.Tensor:
            """TRL's DPO loss of objective ``o``'s batch; its metrics are filed under ``NAME::``. The batch is
            counted in the stage's budget: its tokens always, its pairs where the loss has a gradient."""
            from seqpref import budget

            budget.add(self.budget, batch, trained=torch.is_grad_enabled())
            metrics = self._metrics["train"]
            before = {key: len(values) for key, values in metrics.items()}
            loss = super().compute_loss(model, batch)
            for key in list(metrics):
                if JOINT_SEPARATOR in key:
                    continue
                new = metrics[key][before.get(key, 0) :]
                del metrics[key][before.get(key, 0) :]
                if not metrics[key]:
                    del metrics[key]  # TRL averages every key at log time: no empty lists
                if keep_metrics:
                    metrics[f"{self.joint.names[o]}{JOINT_SEPARATOR}{key}"].extend(new)
            return loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """One micro-batch's loss, by the method's ``loss`` (which also says which objectives it
            descended). Under gradient accumulation every micro-batch of an optimiser step descends the
            same objectives: the sampler gives alright's draw to all of them, and maxright picks once
            per optimiser step (:func:`seqpref.methods.maxright.loss`)."""
            step, position = divmod(self.micro_batches, self.joint.sampler.accumulation)
            loss, stepped = self.joint.method.loss(self, model, inputs["parts"], step, position)
            for i, name in enumerate(self.joint.names):
                self.record_metric(f"{name}{JOINT_SEPARATOR}joint/stepped", float(i in stepped))
                self.stepped_counts[i] += i in stepped
            self.micro_stepped.append(sorted(stepped))
            self.micro_batches += 1
            return (loss, None) if return_outputs else loss

    return JointDPOTrainer


def train_joint_stage(
    base: str,
    objectives: list[tuple[str, str, str]],
    stage: int,
    out_dir: str,
    train_log_path: str,
    options: TrainOptions,
    method_options,
    run: dict,
    previous: str | None = None,
    optimum_scores: dict[str, str] | None = None,
    checkpoint_dir: str | None = None,
) -> dict:
    """Train stage ``stage`` of a joint run and save its adapter and training log.

    ``objectives`` lists ``(name, train_pairs_path, base_logps_path)`` of every objective in config
    order; the stage takes :func:`seqpref.train.stage_steps` of the ``stage``-th objective's train
    pairs (the sequential budget of that stage). The method is ``run["method"]`` (a joint method of
    :mod:`seqpref.methods`) with ``method_options`` (its options dataclass, resolved for this setting).
    ``optimum_scores`` maps objective → stage-1 score file of its single-objective DPO run (maxright's
    f*, unless its options type it).
    Returns the stage summary (steps, seconds, …, and f* when maxright).
    """
    method = methods.get(run["method"])
    if method.kind != methods.JOINT:
        raise ValueError(
            f"train_joint_stage trains a joint method ({', '.join(methods.names(methods.JOINT))}), not {method.name!r}"
        )
    start = time.time()
    names = [name for name, _, _ in objectives]
    if not 1 <= stage <= len(names):
        raise ValueError(f"a joint run of {len(names)} objectives has stages 1..{len(names)}, not {stage}")
    model, tokenizer, workdir = train.start_stage(base, options, out_dir, checkpoint_dir)
    frames = [dpo_trainer.training_dataset(pd.read_parquet(p), pd.read_parquet(b), tokenizer) for _, p, b in objectives]
    steps = train.stage_steps(
        len(frames[stage - 1]), options.batch_size, options.gradient_accumulation_steps, options.epochs
    )
    weights = normalised_weights(names, method_options.weights)
    state = None if method.state is None else method.state(method_options, names, optimum_scores)
    seed = stage_seed(run["seed"], stage)
    plan = method.plan(len(names), steps, weights, seed)
    from datasets import concatenate_datasets

    dataset = concatenate_datasets([f.add_column("objective", [o] * len(f)) for o, f in enumerate(frames)])
    per_objective = (
        options.batch_size
        if method.batch_size is None
        else method.batch_size(method_options, options.batch_size, len(names))
    )
    sampler = JointBatchSampler(
        [len(f) for f in frames], per_objective, plan, seed, options.gradient_accumulation_steps
    )
    records: list[dict] = []
    trainer = joint_trainer_class()(
        joint=JointPlan(method, names, weights, sampler, method_options),
        method_state=state,
        log_records=records,
        share_prompt=options.share_prompt,
        model=model,
        args=dpo_trainer.dpo_config(options, run, workdir, max_steps=steps),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        callbacks=[dpo_trainer.log_callback(records)],
    )
    if len(trainer.train_dataset) != len(dataset):
        raise ValueError(f"TRL dropped {len(dataset) - len(trainer.train_dataset)} pairs whose prompt fills max_length")
    extra = {"joint": {**asdict(method_options), "weights": dict(zip(names, weights.tolist()))}}
    if state is not None:
        extra["joint"].update(state.recorded(names))
    summary = train.run_stage(
        trainer,
        records,
        options,
        run,
        out_dir,
        train_log_path,
        previous,
        start,
        extra,
        method_options=method_options,
        inputs=[f for _, *paths in objectives for f in paths] + list((optimum_scores or {}).values()),
    )
    summary.pop("record")
    if summary["steps"] != steps:
        raise RuntimeError(f"the stage took {summary['steps']} optimiser steps, its budget is {steps}")
    summary["micro_batches_per_objective"] = dict(zip(names, trainer.stepped_counts.tolist()))
    return {**summary, **extra}


def main(argv=None) -> None:
    """CLI: train one stage of a joint run (``train_joint_stage`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="base model id or local directory")
    parser.add_argument("out_dir", help="adapter directory to write")
    parser.add_argument("train_log", help="training-log Parquet to write")
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument(
        "--objective",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "TRAIN_PAIRS", "BASE_LOGPS"),
        help="every objective, in config order",
    )
    parser.add_argument("--previous", default=None, help="adapter directory of the previous stage")
    parser.add_argument(
        "--optimum",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "SCORES"),
        help="maxright: stage-1 score file of NAME's single-objective DPO run",
    )
    parser.add_argument("--options", default="{}", help="JSON of TrainOptions")
    parser.add_argument("--method-options", default="{}", help="JSON of the run's method's options, for this setting")
    parser.add_argument("--run", required=True, help="JSON: setting, method, order, seed, stage, objective")
    parser.add_argument("--checkpoint-dir", default=None, help="where checkpoints go and are resumed from")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="overrides the options' checkpoint_every")
    parser.add_argument(
        "--share-prompt", type=int, choices=[0, 1], default=None, help="overrides the options' share_prompt"
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    options = TrainOptions(**{**json.loads(args.options), **train.execution_options(args)})
    run = json.loads(args.run)
    method_options = methods.options(run["method"], **json.loads(args.method_options))
    log.info(
        "options %s method %s %s run %s previous %s",
        json.dumps(asdict(options)),
        run["method"],
        json.dumps(asdict(method_options)),
        args.run,
        args.previous,
    )
    summary = train_joint_stage(
        args.base,
        [tuple(o) for o in args.objective],
        args.stage,
        args.out_dir,
        args.train_log,
        options,
        method_options,
        run,
        args.previous,
        dict(args.optimum),
        args.checkpoint_dir,
    )
    log.info("trained %s", json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
