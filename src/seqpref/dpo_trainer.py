"""The trainer of a DPO stage: TRL's ``DPOTrainer`` with the base model's log-probs as its reference.

What a stage hands TRL (:mod:`seqpref.train` runs the stage): the trainer class
(:func:`trainer_class`), its ``trl.DPOConfig`` (:func:`dpo_config`), the train dataset with the
precomputed base log-probs as reference columns (:func:`training_dataset`) and the callback that keeps
the training log (:func:`log_callback`). The joint methods' trainer (:mod:`seqpref.joint`) subclasses
this one. Why the reference stays the base model at every stage: docs/design.md, "Methods", and
:mod:`seqpref.train`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd
import torch

from seqpref.checkpoints import STAGE_STATE, STOP, checkpoint_files, sync_folder
from seqpref.lora import restore_lora_dropout
from seqpref.options import TrainOptions

log = logging.getLogger("seqpref.dpo_trainer")


def trainer_class():
    """Build the trainer class on first use: importing TRL takes seconds, and most steps never need it."""
    from trl import DPOTrainer

    class BaseReferenceDPOTrainer(DPOTrainer):
        """TRL's ``DPOTrainer`` whose reference log-probs are the dataset's precomputed base log-probs.

        The train dataset carries ``ref_chosen_logps`` and ``ref_rejected_logps``; with
        ``precompute_ref_log_probs=False`` TRL does not compute them itself, and setting
        ``precompute_ref_logps`` after ``__init__`` makes its loss read them from the batch. Any call
        to TRL's own reference forward is an error: nothing but the base log-probs may be used.
        """

        def __init__(
            self,
            *args,
            gradient_probe=None,
            method_loss=None,
            method_options=None,
            batch_sampler=None,
            log_records=None,
            share_prompt=False,
            chosen_passes=0,
            method_state=None,
            **kwargs,
        ):
            super().__init__(*args, **kwargs)
            self.share_prompt = share_prompt  # each pair's prompt through the model once (seqpref.prefix)
            self.log_records = log_records if log_records is not None else []
            self.gradient_probe = gradient_probe
            # a sequential method's term added to the DPO loss (seqpref.methods.base.Method.loss), or None
            self.method_loss = method_loss
            self.method_options = method_options
            # what the method keeps between micro-batches (its Method.state dataclass), saved in checkpoints
            self.method_state = method_state
            self.batch_sampler = batch_sampler  # a method's batch composition (replay), or None: TRL's sampler
            columns = set(self.train_dataset.column_names)
            if not {"ref_chosen_logps", "ref_rejected_logps"} <= columns:
                raise ValueError(f"the train dataset lacks precomputed base log-probs (columns: {sorted(columns)})")
            if "ref" in getattr(self.model, "peft_config", {}):
                raise RuntimeError("TRL added a 'ref' adapter: the reference would not be the base model")
            restore_lora_dropout(self.model)
            self.precompute_ref_logps = True  # the loss now reads the ref columns from each batch
            # what the stage has trained on so far (seqpref.budget): pairs and tokens of its micro-batches
            self.budget = {"pairs": 0, "tokens": 0}
            self.chosen_passes = chosen_passes
            self.fingerprint = None  # what the stage computes from (stage_fingerprint), set by run_stage

        def stage_state(self) -> dict:
            """What a checkpoint needs beyond TRL's (adapter, optimiser, scheduler, RNG, step): the
            training-log records, the budget so far and the gradient probe's rows so far."""
            probe = self.gradient_probe
            return {
                "records": self.log_records,
                "budget": self.budget,
                "probe_rows": probe.rows if probe else [],
                "probe_seconds": probe.seconds if probe else 0.0,
                "fingerprint": self.fingerprint,
                "method_state": None if self.method_state is None else self.method_state.saved(),
            }

        def load_stage_state(self, state: dict) -> None:
            """Restore :meth:`stage_state` when resuming from a checkpoint."""
            self.log_records[:] = state["records"]
            if "budget" not in state:  # a checkpoint written before budgets were counted: unknown, not too low
                log.warning("the checkpoint has no budget: this stage's budget is logged as unknown (NaN)")
            self.budget = dict(state.get("budget") or {"pairs": float("nan"), "tokens": float("nan")})
            if self.gradient_probe is not None:
                self.gradient_probe.rows[:] = state["probe_rows"]
                self.gradient_probe.seconds = state["probe_seconds"]
            if self.method_state is not None:
                self.method_state = type(self.method_state).restored(state["method_state"])

        def record_metric(self, key: str, value: float) -> None:
            """Log ``value`` under ``key`` in this step's training-log row (averaged over the step's
            micro-batches, as TRL does for its own metrics): the hook methods log through."""
            self._metrics["train"][key].append(float(value))

        def pending_metrics(self) -> dict[str, list[float]]:
            """The metrics logged since the last training-log row, key → values (copies): what the next
            row averages."""
            return {key: list(values) for key, values in self._metrics["train"].items()}

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            staging = folder / f"{STAGE_STATE}.tmp"
            sync_folder(folder)  # TRL's files on disk before the marker that declares them complete
            # saved_on: a signal's checkpoint (the step the job was warned at) or a periodic one
            staging.write_text(
                json.dumps(
                    {
                        **self.stage_state(),
                        "files": checkpoint_files(folder),
                        "saved_on": "signal" if STOP.is_set() else "schedule",
                    },
                    default=float,
                )
            )
            os.replace(staging, folder / STAGE_STATE)  # written last: its presence marks a complete checkpoint
            sync_folder(folder)
            log.info("checkpoint at step %d -> %s", self.state.global_step, folder)

        def get_train_dataloader(self):
            if self.batch_sampler is None:
                return super().get_train_dataloader()
            self._set_signature_columns_if_needed()
            loader = torch.utils.data.DataLoader(
                self.train_dataset.select_columns(self._signature_columns),
                batch_sampler=self.batch_sampler,
                collate_fn=self.data_collator,
            )
            return self.accelerator.prepare(loader)

        def _compute_loss(self, model, inputs, return_outputs):
            """TRL's loss and metrics; with ``share_prompt`` the policy runs each pair's prompt once
            (:class:`seqpref.prefix.SharedPromptModel`), unless a pair's rows do not share one."""
            from seqpref import prefix

            if getattr(self, "share_prompt", False) and prefix.takes_custom_mask(model):
                pairs = prefix.pairs_of_trl_batch(inputs)
                if pairs is not None:
                    packed = prefix.pack(
                        pairs,
                        self.processing_class.pad_token_id,
                        prefix.mask_dtype(model),
                        inputs["input_ids"].device,
                        prefix.attention_layout(model),
                    )
                    model = prefix.SharedPromptModel(model, packed, inputs["completion_mask"])
            return super()._compute_loss(model, inputs, return_outputs)

        def compute_ref_log_probs(self, model, inputs):
            raise RuntimeError("the reference is the precomputed base model; TRL must not compute its own")

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.method_loss is None or not model.training:
                return result
            term = self.method_loss(self, model, inputs)
            if return_outputs:
                return result[0] + term, result[1]
            return result + term

        def count_budget(self, inputs) -> None:
            """Count a training micro-batch into the stage's budget (:mod:`seqpref.budget`)."""
            from seqpref import budget

            budget.add(self.budget, inputs, chosen_passes=self.chosen_passes)

        def training_step(self, model, inputs, *args, **kwargs):
            self.count_budget(inputs)
            probe = self.gradient_probe
            if probe is not None:
                probe.observe(inputs)
            loss = super().training_step(model, inputs, *args, **kwargs)
            # after the last micro-batch's backward, .grad holds the gradient of this optimiser step
            step = self.state.global_step + 1
            if probe is not None and self.accelerator.sync_gradients:
                if probe.due(step):
                    probe.record(self, model, step)
                probe.end_step()
            return loss

    return BaseReferenceDPOTrainer


def log_callback(records: list[dict]):
    """A ``transformers.TrainerCallback`` that appends each training-log row (a dict) to ``records``."""
    from transformers import TrainerCallback

    class RecordLogs(TrainerCallback):
        """Keep every log TRL emits (loss, rewards/margins, ...) with its optimiser step, plus
        ``step_seconds``: the wall seconds of the last optimiser step before the log (data loading,
        forward, backward and optimiser update; what the methods' costs are compared on)."""

        step_start = step_seconds = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.step_start is not None:
                self.step_seconds = time.perf_counter() - self.step_start
            if STOP.is_set():  # a preemption warning: checkpoint this step and stop
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                if "loss" in logs and self.step_seconds is not None:
                    logs = {**logs, "step_seconds": self.step_seconds}
                records.append({"step": state.global_step, **logs})
                log.info("step %d %s", state.global_step, json.dumps(logs, default=float))

    return RecordLogs()


def training_dataset(pairs: pd.DataFrame, base_logps: pd.DataFrame, tokenizer):
    """A ``datasets.Dataset`` of prompt/chosen/rejected with the base log-probs as reference columns.

    Takes a pairs frame (``logps.PAIR_COLUMNS``), its base log-probs (``tables.LOGPS``) and the
    tokenizer: each pair becomes :func:`seqpref.tokenization.model_inputs`, the same inputs the scorer
    tokenizes (message lists when the tokenizer has a chat template, text otherwise). Every pair must
    have base log-probs; a missing pair is an error naming it.
    """
    from datasets import Dataset

    from seqpref.tokenization import model_inputs

    if "prompt_messages" not in pairs.columns:
        pairs = pairs.assign(prompt_messages=None)
    merged = pairs[["pair_id", "prompt", "prompt_messages", "chosen", "rejected"]].merge(
        base_logps[["pair_id", "logp_chosen", "logp_rejected"]], on="pair_id", how="left", validate="one_to_one"
    )
    missing = merged.loc[merged["logp_chosen"].isna(), "pair_id"].tolist()
    if missing:
        raise ValueError(f"{len(missing)} train pairs have no base log-probs, e.g. {missing[:5]}")
    inputs = [
        model_inputs(tokenizer, p, m, c, r)
        for p, m, c, r in zip(merged["prompt"], merged["prompt_messages"], merged["chosen"], merged["rejected"])
    ]
    return Dataset.from_dict(
        {
            "pair_id": merged["pair_id"].tolist(),
            "prompt": [x[0] for x in inputs],
            "chosen": [x[1] for x in inputs],
            "rejected": [x[2] for x in inputs],
            "ref_chosen_logps": merged["logp_chosen"].astype(float).tolist(),
            "ref_rejected_logps": merged["logp_rejected"].astype(float).tolist(),
        }
    )


def dpo_config(options: TrainOptions, run: dict, workdir: str, max_steps: int = -1):
    """The ``trl.DPOConfig`` of a stage: our options, the base log-probs as reference, no checkpoints,
    bf16 only on CUDA with a bf16 model (TRL 1.16 defaults to bf16 even on CPU), seeded by the run."""
    from trl import DPOConfig

    from seqpref import base_model

    device = base_model.torch_device()
    use_bf16 = device.type == "cuda" and options.dtype in ("auto", "bfloat16")
    return DPOConfig(
        output_dir=workdir,
        **options.dpo_config_fields(),
        max_steps=max_steps,
        precompute_ref_log_probs=False,  # the base log-probs are already in the dataset
        # checkpoints (adapter, optimiser, scheduler, RNG, step) every checkpoint_every steps, the last two kept
        save_strategy="steps" if options.checkpoint_every else "no",
        save_steps=options.checkpoint_every or 500,
        save_total_limit=2,
        report_to=[],
        seed=int(run["seed"]),
        data_seed=int(run["seed"]),
        bf16=use_bf16,
        use_cpu=device.type != "cuda",
        disable_tqdm=True,
    )
