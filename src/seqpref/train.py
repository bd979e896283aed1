"""Train one stage of one run: DPO with a LoRA adapter that continues the previous stage's.

``python -m seqpref.train BASE PAIRS BASE_LOGPS OUT_DIR TRAIN_LOG [--previous DIR] --options JSON --run JSON``

How the reference is kept the base model at every stage (docs/design.md, "Methods"):

* TRL 1.16 makes a frozen copy of a *loaded* adapter its reference ("ref"), so stage 2 would be
  measured against stage 1. We never hand TRL a loaded adapter: every stage gives it the base model
  and a ``peft_config``, so it creates a fresh "default" adapter, and we then copy the previous
  stage's weights into that adapter before training starts.
* The reference log-probs are the base model's, computed once per dataset by the ``base_logps`` rule
  and handed to the trainer as the ``ref_chosen_logps`` / ``ref_rejected_logps`` columns that TRL's
  ``precompute_ref_log_probs`` would otherwise add. (TRL's own precompute hashes every weight of the
  model and runs another forward pass over the data in every job; ours is shared by all runs.)
* Only the trained adapter is saved (``selected_adapters=["default"]``), and the save is checked.

The trainer itself (TRL's ``DPOTrainer`` subclass, its config, dataset and log callback) is
:mod:`seqpref.dpo_trainer`; LoRA helpers and adapter I/O are :mod:`seqpref.lora`; checkpoints and
signals :mod:`seqpref.checkpoints`; options :mod:`seqpref.options`. This module runs a stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

from seqpref import dpo_trainer
from seqpref.checkpoints import (
    STAGE_STATE,
    STOP,
    StagePreempted,
    last_checkpoint,
    stage_fingerprint,
    stop_on_signals,
)
from seqpref.lora import adapter_state, check_saved_adapter, load_adapter_weights
from seqpref.options import (
    CHANGE_NORM,
    JOINT_SEPARATOR,
    DiagnosticsOptions,
    TrainOptions,
    recorded_options,
)
from seqpref.plan import stage_seed

log = logging.getLogger("seqpref.train")


def stage_steps(n_pairs: int, batch_size: int, gradient_accumulation_steps: int = 1, epochs: float = 1.0) -> int:
    """Optimiser steps a sequential stage takes on ``n_pairs`` train pairs (what ``transformers.Trainer``
    computes: ceil(n/batch) micro-batches per epoch, grouped by the accumulation steps, times epochs).
    A joint stage is given this many steps so that every method has the same budget."""
    micro_batches = math.ceil(n_pairs / batch_size)
    per_epoch = max(
        micro_batches // gradient_accumulation_steps + int(micro_batches % gradient_accumulation_steps > 0), 1
    )
    return math.ceil(epochs * per_epoch)


def training_rows(records: list[dict], run: dict) -> pd.DataFrame:
    """TRAINING rows of a stage's logs: one per (step, metric). A metric logged as ``NAME::metric``
    (a joint stage's per-objective metrics) is filed under objective NAME; others under the run's."""
    from seqpref import tables

    keys = {k: run[k] for k in ("setting", "method", "order", "seed", "stage")}
    rows = []
    for record in records:
        for key, value in record.items():
            if key == "step" or not isinstance(value, (int, float)):
                continue
            objective, _, metric = key.rpartition(JOINT_SEPARATOR)
            rows.append(
                {
                    **keys,
                    "objective": objective or run["objective"],
                    "step": int(record["step"]),
                    "metric": metric,
                    "value": float(value),
                }
            )
    return pd.DataFrame(rows, columns=tables.TRAINING.names)


def start_stage(base: str, options: TrainOptions, out_dir: str, checkpoint_dir: str | None = None):
    """Load the base model; returns ``(model, tokenizer, workdir)``. ``workdir`` is the trainer's
    folder: ``checkpoint_dir`` (kept across a killed run, so that a rerun resumes; removed when the
    stage succeeds) when given, else a scratch directory beside ``out_dir``."""
    from seqpref import base_model

    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = base_model.load_base(base, options.dtype, options.attn_implementation)
    if checkpoint_dir:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        return model, tokenizer, str(checkpoint_dir)
    return model, tokenizer, tempfile.mkdtemp(prefix="trainer-", dir=Path(out_dir).parent)


def run_stage(
    trainer,
    records,
    options: TrainOptions,
    run: dict,
    out_dir: str,
    train_log_path: str,
    previous: str | None,
    start: float,
    record_extra: dict | None = None,
    method_options=None,
    inputs: list[str] | None = None,
) -> dict:
    """Continue ``previous``'s adapter, train, save the adapter only (checked) and the training log.
    A checkpoint is resumed only when it was saved by this stage: the same options, ``record_extra``,
    ``inputs`` (the stage's data files) and previous adapter (:func:`stage_fingerprint`).

    Returns the stage summary: steps, pairs, seconds, trainable parameters, tensors loaded and the
    adapter's change norm; raises if training left the adapter unchanged.
    """
    from seqpref import budget, provenance, tables

    loaded = load_adapter_weights(trainer.model, previous, options.lora) if previous else 0
    before = adapter_state(trainer.model)
    n_trainable = sum(t.numel() for t in before.values())
    if n_trainable == 0:
        raise RuntimeError("the adapter has no trainable parameters")
    trainer.fingerprint = stage_fingerprint(options, method_options, inputs or [], previous, record_extra)
    resume = last_checkpoint(trainer.args.output_dir, trainer.fingerprint)
    if resume:
        state = json.loads((Path(resume) / STAGE_STATE).read_text())
        trainer.load_stage_state(state)
        log.info("resuming from %s (saved on %s)", resume, state.get("saved_on", "an unrecorded occasion"))
    trainer.train(resume_from_checkpoint=resume)
    if STOP.is_set():
        raise StagePreempted(
            f"stopped on a signal at step {trainer.state.global_step}; checkpoint in "
            f"{last_checkpoint(trainer.args.output_dir)}: a rerun resumes from it"
        )
    after = adapter_state(trainer.model)
    change = float(torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before)))
    if change == 0.0:
        raise RuntimeError("training left the adapter unchanged")

    # save the trained adapter only, then check that nothing else was written
    staging = Path(tempfile.mkdtemp(prefix="adapter-", dir=Path(out_dir).parent))
    trainer.model.save_pretrained(staging, selected_adapters=["default"])
    check_saved_adapter(staging, after)
    (staging / "training_options.json").write_text(
        json.dumps(
            {"options": recorded_options(options, method_options), "run": run, **(record_extra or {})},
            indent=2,
            default=str,
        )
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(staging):
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(trainer.args.output_dir, ignore_errors=True)

    record = provenance.provenance(
        "train_stage",
        {
            "options": recorded_options(options, method_options),
            "run": run,
            "previous": previous,
            **(record_extra or {}),
        },
    )
    # how far the stage moved the LoRA parameters, ‖θ_after − θ_before‖₂, logged at the last step (the
    # sham control compares it between a stage and its sham)
    records = [
        *records,
        {
            "step": trainer.state.global_step,
            CHANGE_NORM: change,
            **budget.budget_record(trainer.budget, trainer.state.global_step),
        },
    ]
    tables.write_table(training_rows(records, run), train_log_path, tables.TRAINING, record)
    return {
        "pairs": len(trainer.train_dataset),
        "steps": trainer.state.global_step,
        "trainable_parameters": n_trainable,
        "tensors_loaded_from_previous": loaded,
        "adapter_change_norm": change,
        "resumed_from": resume,
        "seconds": round(time.time() - start, 2),
        "record": record,
    }


def train_stage(
    base: str,
    pairs_path: str,
    base_logps_path: str,
    out_dir: str,
    train_log_path: str,
    options: TrainOptions,
    run: dict,
    previous: str | None = None,
    earlier: list[tuple[str, int, str, str]] | None = None,
    diagnostics: "DiagnosticsOptions | None" = None,
    diagnostics_path: str | None = None,
    checkpoint_dir: str | None = None,
    method_options=None,
    lr_scale: float = 1.0,
    record_extra: dict | None = None,
) -> dict:
    """Train one sequential stage and save its adapter to ``out_dir`` and its log to ``train_log_path``.

    The method is ``run["method"]`` (a sequential method of :mod:`seqpref.methods`) with
    ``method_options`` (its options dataclass; its defaults when None): its loss term is added to the
    DPO loss, and a method that composes its own batches (replay) draws them from this stage's pairs
    and the ``earlier`` objectives' train pairs, over the same optimiser steps as a DPO stage.

    With ``checkpoint_dir``, checkpoints (every ``options.checkpoint_every`` steps, and on SIGUSR1 /
    SIGTERM in the CLI) go there, a rerun resumes from the newest complete one, and the folder is
    removed when the stage succeeds.

    ``earlier`` lists ``(objective, stage, train_pairs_path, base_logps_path)`` of the objectives
    trained before this stage (replayed by replay); with ``diagnostics`` enabled, the gradient cosines against them are
    written to ``diagnostics_path`` (a DIAGNOSTICS table, empty at stage 1 or when disabled).

    ``run`` holds setting, method, order, seed, stage and objective (they label the log rows).
    ``lr_scale`` multiplies ``options.learning_rate`` in training only (a distance-matched sham,
    :func:`seqpref.controls.match_distance`; the adapter records ``options`` as given, and
    ``record_extra`` beside them). Returns a summary: steps, pairs, seconds, trainable parameters, and
    the adapter's change norm.
    """
    from seqpref import methods, tables

    method = methods.get(run["method"])
    if method.kind != methods.SEQUENTIAL:
        raise ValueError(
            f"train_stage trains a sequential method ({', '.join(methods.names(methods.SEQUENTIAL))}), "
            f"not {method.name!r}"
        )
    method_options = method_options if method_options is not None else method.options()
    start = time.time()
    model, tokenizer, workdir = start_stage(base, options, out_dir, checkpoint_dir)
    dataset = dpo_trainer.training_dataset(pd.read_parquet(pairs_path), pd.read_parquet(base_logps_path), tokenizer)
    earlier_sets = [
        (name, stage, dpo_trainer.training_dataset(pd.read_parquet(p), pd.read_parquet(b), tokenizer))
        for name, stage, p, b in (earlier or [])
    ]
    records: list[dict] = []
    probe = None
    if diagnostics is not None and diagnostics.enabled and earlier_sets:
        from seqpref.diagnostics import GradientProbe

        # the step's .grad is not the probes' kind of gradient where LoRA dropout is on, a method adds a
        # loss term or replayed pairs join the step: the probe then recomputes it (seqpref.diagnostics)
        recompute = options.lora.dropout > 0 or method.loss is not None or method.batches is not None
        probe = GradientProbe(
            earlier_sets, diagnostics, current=(run["objective"], run["stage"], dataset), recompute_current=recompute
        )
    sampler, max_steps, train_set = None, -1, dataset
    if method.batches is not None and earlier_sets:
        from datasets import concatenate_datasets

        max_steps = stage_steps(len(dataset), options.batch_size, options.gradient_accumulation_steps, options.epochs)
        sampler = method.batches(
            method_options,
            [len(dataset)] + [len(d) for _, _, d in earlier_sets],
            options.batch_size,
            max_steps,
            stage_seed(run["seed"], run["stage"]),
            options.gradient_accumulation_steps,
        )
        train_set = concatenate_datasets([dataset] + [d for _, _, d in earlier_sets])
    trainer = dpo_trainer.trainer_class()(
        gradient_probe=probe,
        method_loss=method.loss,
        method_options=method_options,
        batch_sampler=sampler,
        chosen_passes=method.chosen_passes,
        share_prompt=options.share_prompt,
        log_records=records,
        model=model,
        args=dpo_trainer.dpo_config(
            replace(options, learning_rate=options.learning_rate * lr_scale), run, workdir, max_steps=max_steps
        ),
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=options.lora.peft_config(),
        callbacks=[dpo_trainer.log_callback(records)],
    )
    dropped = len(train_set) - len(trainer.train_dataset)
    if dropped:
        raise ValueError(f"TRL dropped {dropped} pairs whose prompt alone fills max_length={options.max_length}")
    summary = run_stage(
        trainer,
        records,
        options,
        run,
        out_dir,
        train_log_path,
        previous,
        start,
        record_extra,
        method_options=method_options,
        inputs=[pairs_path, base_logps_path] + [f for _, _, *paths in earlier or [] for f in paths],
    )
    record = summary.pop("record")
    if diagnostics_path:
        keys = {k: run[k] for k in ("setting", "method", "order", "seed", "stage", "objective")}
        rows = [{**keys, **row} for row in (probe.rows if probe else [])]
        tables.write_table(
            pd.DataFrame(rows, columns=tables.DIAGNOSTICS.names), diagnostics_path, tables.DIAGNOSTICS, record
        )
    summary["diagnostics_seconds"] = round(probe.seconds, 3) if probe else 0.0
    return summary


def execution_options(args) -> dict:
    """The options a CLI takes as flags because they change how a stage runs, not what it computes
    (the workflow passes them as resources, so changing them reruns nothing): those given."""
    values = {
        "checkpoint_every": getattr(args, "checkpoint_every", None),
        "share_prompt": getattr(args, "share_prompt", None),
    }
    return {k: (bool(v) if k == "share_prompt" else v) for k, v in values.items() if v is not None}


def main(argv=None) -> None:
    """CLI: train one stage (``train_stage`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", help="base model id or local directory")
    parser.add_argument("pairs", help="train pairs Parquet of this stage's objective")
    parser.add_argument("base_logps", help="base log-probs Parquet of those pairs")
    parser.add_argument("out_dir", help="adapter directory to write")
    parser.add_argument("train_log", help="training-log Parquet to write")
    parser.add_argument("--previous", default=None, help="adapter directory of the previous stage")
    parser.add_argument("--options", default="{}", help="JSON of TrainOptions")
    parser.add_argument(
        "--method-options", default="{}", help="JSON of the run's method's options (method_options.<method>)"
    )
    parser.add_argument("--run", required=True, help="JSON: setting, method, order, seed, stage, objective")
    parser.add_argument(
        "--earlier",
        nargs=4,
        action="append",
        default=[],
        metavar=("NAME", "STAGE", "TRAIN_PAIRS", "BASE_LOGPS"),
        help="an objective trained at an earlier stage (for the gradient diagnostics and replay)",
    )
    parser.add_argument("--diagnostics", default='{"enabled": false}', help="JSON of DiagnosticsOptions")
    parser.add_argument("--diagnostics-out", default=None, help="diagnostics Parquet to write")
    parser.add_argument("--checkpoint-dir", default=None, help="where checkpoints go and are resumed from")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="overrides the options' checkpoint_every")
    parser.add_argument(
        "--share-prompt", type=int, choices=[0, 1], default=None, help="overrides the options' share_prompt"
    )
    parser.add_argument(
        "--match-distance",
        default=None,
        metavar="REAL_TRAIN_LOG",
        help="a sham: scale the learning rate so that it moves the adapter as far as the stage of this "
        "training log (seqpref.controls.match_distance)",
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    options = TrainOptions(**{**json.loads(args.options), **execution_options(args)})
    run = json.loads(args.run)
    from seqpref import methods

    method_options = methods.options(run["method"], **json.loads(args.method_options))
    log.info(
        "options %s method %s %s run %s previous %s",
        json.dumps(asdict(options)),
        run["method"],
        json.dumps(asdict(method_options)),
        json.dumps(run),
        args.previous,
    )

    earlier = [(name, int(stage), pairs, logps) for name, stage, pairs, logps in args.earlier]
    lr_scale, extra = 1.0, None
    if args.match_distance:  # a sham: first a pilot at the configured learning rate (seqpref.controls)
        from seqpref import controls

        def pilot(out_dir: str, log_path: str) -> float:
            return train_stage(
                args.base,
                args.pairs,
                args.base_logps,
                out_dir,
                log_path,
                options,
                run,
                args.previous,
                earlier,
                method_options=method_options,
            )["adapter_change_norm"]

        lr_scale, extra = controls.match_distance(
            pilot,
            args.match_distance,
            args.out_dir,
            args.checkpoint_dir,
            {
                "options": recorded_options(options, method_options),
                "previous": args.previous,
                "pairs": args.pairs,
                "reference": args.base_logps,
                "earlier": earlier,
                "seed": run["seed"],
            },
        )
    summary = train_stage(
        args.base,
        args.pairs,
        args.base_logps,
        args.out_dir,
        args.train_log,
        options,
        run,
        args.previous,
        earlier,
        DiagnosticsOptions(**json.loads(args.diagnostics)),
        args.diagnostics_out,
        args.checkpoint_dir,
        method_options,
        lr_scale,
        extra,
    )
    log.info("trained %s", json.dumps(summary))


if __name__ == "__main__":
    main()
