"""How a workflow step starts and what a step that loads a model asks for: the one place the rules read.

A step that loads a model ("gpu") runs through ``python -m seqpref.gpus --``: on a workstation with
several GPUs each local job gets a GPU of its own (snakemake does not assign GPU ids, snakemake issue
#281); under SLURM, and without GPUs, the step runs as is (:mod:`seqpref.gpus` hands it to
:mod:`seqpref.warm`). A step that imports torch but loads no model ("torch") runs through
``python -m seqpref.warm --``: on a workstation it is forked from a server that imported
torch/transformers/PEFT/TRL once, instead of importing them again (4-5 s a job); under SLURM, or with
``warm_start: false``, it starts cold. Any other step (data, tables, figures) is a plain ``python -m``.
"""

from __future__ import annotations

#: the prefix of a step's command, by what it needs
LAUNCH = {"gpu": "python -m seqpref.gpus -- ", "torch": "python -m seqpref.warm -- ", None: ""}

#: what a step that loads a model asks for, by job shape: one GPU each (so ``--resources gpu=N`` runs N
#: at once), its memory (MB) and its time (minutes). These are a workstation's sizes (the lab's); the
#: SLURM profile, profiles/slurm, gives these rules its GPU partition and a cluster's larger sizes.
GPU_STEPS = {
    "train": {"mem_mb": 4000, "runtime": 120},
    "score": {"mem_mb": 4000, "runtime": 60},
    "logps": {"mem_mb": 4000, "runtime": 60},
    "merge": {"mem_mb": 4000, "runtime": 30},
}


def step(module: str, needs: str | None = None) -> str:
    """The start of a shell command that runs ``python -m <module>``, by what the step needs: "gpu"
    (it loads a model), "torch" (it imports torch, loads no model) or None (neither)."""
    return f"{LAUNCH[needs]}python -m {module}"


def gpu_resources(shape: str) -> dict:
    """The resources of a step of job ``shape`` (a key of :data:`GPU_STEPS`) that loads a model: its GPU,
    memory and runtime, as a dict for ``resources: **gpu_resources(shape)``."""
    return {**GPU_STEPS[shape], "gpu": 1}
