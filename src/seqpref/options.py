"""The options of every step, as dataclasses: what a config section holds and its defaults.

These defaults are the workflow's: the config schema takes each mirrored key's default from here when
the config is checked (:data:`seqpref.config.SECTIONS` says which section mirrors which class), so a
step run by hand (``python -m seqpref.<step>``) does what the DAG does. Nothing here imports torch, so the config check at workflow parse time, the plan and the CLIs read
these without loading a model. Each class names the config section it mirrors; the training,
scoring and aggregation modules take them as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

#: training-log metric: the L2 distance the stage moved the trainable (LoRA) parameters
CHANGE_NORM = "adapter/change_norm"
JOINT_SEPARATOR = "::"  # a joint stage logs objective o's metric m as "o::m"


LABEL_METRICS = ["reward_margin", "dpo_margin", "ln_margin", "rel_accuracy"]


@dataclass
class LoraOptions:
    """The LoRA adapter shared by every stage of a run (``train.lora`` in the config)."""

    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: float = field(default=16, metadata={"help": "LoRA α; updates are scaled by α/r."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    target_modules: str | list[str] = field(
        default="all-linear", metadata={"help": "Modules to adapt; 'all-linear' = every linear layer but lm_head."}
    )

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")

    def peft_config(self):
        """The ``peft.LoraConfig`` of these options (causal LM)."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )


def _to_dpo_config(name: str | bool = True) -> dict:
    """Field metadata marking an option that ``trl.DPOConfig`` takes: under the same name (True) or ``name``."""
    return {"dpo_config": name}


@dataclass
class TrainOptions:
    """Options of one training stage (``train`` in the config, plus ``dtype`` and ``attn_implementation``).

    These defaults are the workflow's (the config check fills the ``train`` keys, ``dtype``,
    ``attn_implementation`` and ``share_prompt`` from them), so ``python -m seqpref.train`` run by hand
    trains what the DAG trains. Fields marked ``dpo_config`` go to ``trl.DPOConfig`` as
    they are (:func:`dpo_config`); the method and its options are the run's (``--method-options``).
    """

    beta: float = field(
        default=0.1, metadata={"help": "DPO temperature β (Rafailov et al., 2023).", **_to_dpo_config()}
    )
    learning_rate: float = field(default=0.003, metadata={"help": "Peak learning rate.", **_to_dpo_config()})
    epochs: float = field(
        default=1, metadata={"help": "Passes over the stage's train pairs.", **_to_dpo_config("num_train_epochs")}
    )
    batch_size: int = field(
        default=16,
        metadata={"help": "Pairs per device per micro-batch.", **_to_dpo_config("per_device_train_batch_size")},
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimiser step.", **_to_dpo_config()}
    )
    max_length: int = field(
        default=128, metadata={"help": "Tokens of prompt + response; longer is truncated.", **_to_dpo_config()}
    )
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "transformers scheduler name.", **_to_dpo_config()}
    )
    optim: str = field(
        default="adamw_torch",
        metadata={"help": "transformers optimizer name (adamw_torch, sgd, ...).", **_to_dpo_config()},
    )
    warmup_steps: float = field(
        default=0, metadata={"help": "Warm-up steps (a float < 1 is a share).", **_to_dpo_config()}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay.", **_to_dpo_config()})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm.", **_to_dpo_config()})
    logging_steps: int = field(
        default=1, metadata={"help": "Optimiser steps between training-log rows.", **_to_dpo_config()}
    )
    activation_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations (GPU memory).", **_to_dpo_config()}
    )
    checkpoint_every: int = field(
        default=0, metadata={"help": "Optimiser steps between resumable checkpoints; 0 = none."}
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "sdpa, eager, flash_attention_2."})
    dtype: str = field(default="auto", metadata={"help": "auto = bf16 on CUDA, fp32 on CPU."})
    share_prompt: bool = field(
        default=True,
        metadata={
            "help": "Run each pair's prompt once for both responses (seqpref.prefix; share_prompt in the config)."
        },
    )
    lora: LoraOptions = field(default_factory=LoraOptions)

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = LoraOptions(**self.lora)
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    def dpo_config_fields(self) -> dict:
        """The options ``trl.DPOConfig`` takes, under its names."""
        return {
            (f.metadata["dpo_config"] if isinstance(f.metadata["dpo_config"], str) else f.name): getattr(self, f.name)
            for f in fields(self)
            if f.metadata.get("dpo_config")
        }


@dataclass
class LogpsOptions:
    """How log-probs are computed (the ``base_logps`` rule; :class:`ScoreOptions` adds β).

    The defaults are the workflow's eval split's reference: ``score.batch_size`` and ``score.dtype``
    are filled in from here, the rest are :class:`TrainOptions`' (``train.max_length``,
    ``attn_implementation``, ``share_prompt``). The DAG computes the train split's, the training
    reference, in the training ``dtype``.
    """

    max_length: int = field(
        default=TrainOptions.max_length, metadata={"help": "Tokens of prompt + response (train.max_length)."}
    )
    batch_size: int = field(default=64, metadata={"help": "Sequences per forward pass (score.batch_size)."})
    dtype: str = field(default="float32", metadata={"help": "Model precision (score.dtype; the train split: dtype)."})
    attn_implementation: str | None = field(
        default=TrainOptions.attn_implementation, metadata={"help": "sdpa, eager, flash_attention_2."}
    )
    share_prompt: bool = field(
        default=TrainOptions.share_prompt,
        metadata={"help": "Run each pair's prompt once for both responses (seqpref.prefix; share_prompt)."},
    )

    def __post_init__(self):
        if self.max_length < 8 or self.batch_size < 1:
            raise ValueError(f"need max_length >= 8 and batch_size >= 1, got {self.max_length}, {self.batch_size}")


@dataclass
class ScoreOptions(LogpsOptions):
    """How a stage is scored: :class:`LogpsOptions` (the tokenization of training,
    ``score.batch_size``, ``score.dtype``) and β of the ``dpo_margin`` column (``train.beta``)."""

    beta: float = field(default=TrainOptions.beta, metadata={"help": "DPO β of the dpo_margin column (train.beta)."})


@dataclass
class DiagnosticsOptions:
    """``diagnostics`` in the config (the defaults are the workflow's)."""

    enabled: bool = True
    every: int = field(default=4, metadata={"help": "Optimiser steps between probes (step 1 is always probed)."})
    batch_size: int = field(default=16, metadata={"help": "Pairs in each earlier objective's probe batch."})

    def __post_init__(self):
        if self.every < 1 or self.batch_size < 1:
            raise ValueError("diagnostics.every and diagnostics.batch_size must be >= 1")


@dataclass
class LabModelOptions:
    """Size and pretraining budget of the lab's tiny Llama (``lab.model`` and ``lab.pretrain`` in the config)."""

    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary size, special tokens included."})
    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    intermediate_size: int = field(default=128, metadata={"help": "MLP width."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Decoder layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Query heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Key/value heads (GQA)."})
    max_position_embeddings: int = field(default=128, metadata={"help": "Longest sequence in tokens."})
    corpus_size: int = field(default=4000, metadata={"help": "Pretraining texts drawn from the lab."})
    steps: int = field(default=300, metadata={"help": "Pretraining optimiser steps."})
    batch_size: int = field(default=32, metadata={"help": "Pretraining texts per step."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (cosine decay)."})
    seed: int = field(default=0, metadata={"help": "Seed of the corpus, the tokenizer and the weights."})

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")


@dataclass
class LabelOptions:
    """How changes are labelled (``labels`` in the config; the defaults are the workflow's)."""

    metric: str = "reward_margin"  # whose change is labelled
    # a label needs |change| ≥ max(min_effect, min_share · max(own gain, 0)) (stats.label_threshold): an
    # earlier objective's change is judged against what its own stage taught it, once that exceeds min_effect
    min_share: float | None = 0.1
    min_effect: float = 0.25  # the floor of the threshold, metric units (the whole threshold without an own gain)
    pair_move: float = 0.5  # a pair "moved" only beyond the runs' noise band and by at least this (metric units)
    redistribution_share: float = 0.2  # stable, pair effects shown (F test), and ≥ this share moved up AND down
    confidence: float = 0.95
    n_boot: int = 1000  # the hypervolume interval's pair-bootstrap resamples (seqpref.pareto)
    seed: int = 0
    # the sham is a valid null only where it leaves its own objective within this share of what the real
    # stage taught it, and moves the adapter within this band of the real stage's distance (controls.control_validity)
    sham_own_tolerance: float = 0.25
    sham_distance: list[float] = field(default_factory=lambda: [0.8, 1.25])

    def __post_init__(self):
        if self.metric not in LABEL_METRICS:
            raise ValueError(f"labels.metric must be one of {LABEL_METRICS}, got {self.metric!r}")
        if self.min_effect < 0 or not 0 < self.confidence < 1 or self.n_boot < 100:
            raise ValueError("labels: need min_effect ≥ 0, 0 < confidence < 1 and n_boot ≥ 100")
        if self.min_share is not None and not 0 < self.min_share <= 1:
            raise ValueError(f"labels.min_share must be in (0, 1] or null, got {self.min_share}")
        if self.pair_move <= 0 or not 0 < self.redistribution_share <= 0.5:
            raise ValueError("labels: need pair_move > 0 and 0 < redistribution_share ≤ 0.5")
        self.sham_distance = [float(v) for v in self.sham_distance]
        if (
            self.sham_own_tolerance < 0
            or len(self.sham_distance) != 2
            or not 0 < self.sham_distance[0] <= 1 <= self.sham_distance[1]
        ):
            raise ValueError("labels: need sham_own_tolerance ≥ 0 and sham_distance = [lo, hi] with 0 < lo ≤ 1 ≤ hi")


def recorded_options(options: TrainOptions, method_options) -> dict:
    """What a stage records as its options (``training_options.json``, which the retrain guard compares
    with what the config now gives the stage): the train options and the method's options."""
    return {**asdict(options), "method_options": asdict(method_options)}
