"""What a method declares to the registry (:mod:`seqpref.methods`).

A method is one module under ``seqpref/methods/`` holding its options dataclass (``method_options.<name>``
in the config: each field's type, default and ``help``, and in its metadata ``schema`` the JSON-schema
constraints the config check applies, e.g. ``{"minimum": 0}``; cross-checks in ``__post_init__``, which
the config check runs too), its loss or step, and a :class:`Method` record that names them (``METHOD``).
Nothing here imports torch: the workflow reads the registry every time it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: one stage per objective, in every order of the setting (train_stage)
SEQUENTIAL = "sequential"
#: every objective at every stage, one order (the setting's config order), the sequential step budget (train_joint_stage)
JOINT = "joint"
#: no training of its own: built from other runs' adapters, one order (the config order)
POST_HOC = "post_hoc"
KINDS = (SEQUENTIAL, JOINT, POST_HOC)


@dataclass(frozen=True)
class Method:
    """One training method.

    ``name`` is its key in ``methods:`` and ``method_options:``; ``kind`` one of :data:`KINDS`;
    ``options`` its options dataclass (built from ``method_options.<name>``); ``colour`` its colour in
    every figure; ``summary`` one line for legends and docs. The hooks, by kind:

    * sequential: ``loss(trainer, model, inputs) -> Tensor | None`` adds a term to TRL's DPO loss of a
      micro-batch (None: plain DPO); ``batches(options, sizes, batch_size, steps, seed, accumulation)``
      returns a batch sampler over [this stage's pairs; earlier objectives' pairs] (None: TRL's own).
    * joint: ``plan(n_objectives, steps, weights, seed) -> list[list[int]]`` the objectives each
      optimiser step receives, and ``loss(trainer, model, parts, step, position) -> (loss, stepped)``
      the micro-batch loss from the per-objective batches ``parts``; ``batch_size(options, batch_size,
      n_objectives) -> int`` the pairs of each objective in a micro-batch (None: ``batch_size``).
    * post_hoc: ``build`` makes a stage's adapter from other runs' adapters.

    A method's ``loss`` logs through ``trainer.record_metric(key, value)`` and keeps what it carries
    between micro-batches in its own state, never on the trainer: ``state(options, names,
    single_objective_files) -> object`` makes it at a joint stage's start (the trainer holds it as
    ``trainer.method_state``); the object has ``saved() -> dict`` (JSON values, written into every
    checkpoint), a classmethod ``restored(dict)`` (a resumed stage's) and ``recorded(names) -> dict``
    (what the adapter's record notes of it).
    """

    name: str
    kind: str
    options: type
    colour: str
    summary: str
    loss: Callable | None = None
    plan: Callable | None = None
    batches: Callable | None = None
    build: Callable | None = None
    batch_size: Callable | None = None
    state: Callable | None = None
    #: each stage k >= 2 also gets a sham (controls.sham); sequential methods only
    sham: bool = False
    #: a sequential stage k also trains the earlier objectives (replayed pairs in its batches): they are
    #: ``replayed`` there, and labelled ``trained`` like every objective a stage trains
    replays_earlier: bool = False
    #: forward passes a training micro-batch's chosen sequences take beyond the DPO loss's own (counted in
    #: the stage's token budget, seqpref.budget): SPO's look-ahead takes 3
    chosen_passes: int = 0
    #: what the method reads of each objective's single-objective run (stage 1 of the ``dpo`` order that
    #: starts with it, same seed), a DAG dependency: "scores" (maxright's f*), "adapters" (merge) or None
    single_objective: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.sham and self.kind != SEQUENTIAL:
            raise ValueError(f"method {self.name!r}: only a sequential method has sham stages")
        if self.single_objective not in (None, "scores", "adapters"):
            raise ValueError(f"method {self.name!r}: single_objective must be scores, adapters or None")

    def setting_options(self, block: dict, setting: str, objectives: list[str]) -> dict:
        """``method_options.<name>`` (``block``) as the runs of ``setting`` see it, by the options class's
        ``for_setting`` when it has one (weights of other settings' objectives dropped, a per-setting
        table reduced to this setting's entry), else as it is: what a run's stages are given, and
        what changing retrains."""
        resolve = getattr(self.options, "for_setting", None)
        return resolve(dict(block), setting, objectives) if resolve else dict(block)
