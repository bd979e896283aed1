"""Resumable checkpoints of a training stage: what marks one complete and intact, which stage saved it
(its fingerprint), and the signals that make a stage save one and stop.

TRL's trainer writes the checkpoint; :mod:`seqpref.train` adds :data:`STAGE_STATE` last, and this module
decides which checkpoint, if any, a rerun resumes from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path

from seqpref.guard import EXECUTION_OPTIONS  # how a stage runs, not what it computes: a checkpoint resumes across them
from seqpref.options import TrainOptions, recorded_options

log = logging.getLogger("seqpref.checkpoints")


STAGE_STATE = "seqpref_state.json"  # our part of a checkpoint, written after TRL's


STOP = threading.Event()  # set by SIGUSR1/SIGTERM in the CLI: save a checkpoint at the end of the step and stop


class StagePreempted(RuntimeError):
    """The stage stopped on a signal after saving a checkpoint; a rerun resumes from it."""


def stop_on_signals() -> None:
    """SIGTERM (SLURM's warning before a time limit, ``--signal=TERM@300`` in profiles/slurm, and its
    notice of preemption) and SIGUSR1 make the stage save a checkpoint at the end of its current optimiser step and exit
    with an error (:class:`StagePreempted`); the rerun or requeued job resumes from there."""
    import signal

    for signum in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(signum, lambda *_: STOP.set())


def checkpoint_files(folder: Path) -> dict[str, int]:
    """Every file of a checkpoint folder but our :data:`STAGE_STATE`, relative path → size in bytes."""
    return {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(STAGE_STATE)
    }


def sync_folder(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves, so that what a later marker
    declares written is on disk even after a node crash."""
    for path in sorted(folder.rglob("*")) + [folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _intact(folder: Path) -> bool:
    """A checkpoint whose files are all there at the sizes its :data:`STAGE_STATE` recorded (a state
    written before sizes were recorded is trusted)."""
    try:
        recorded = json.loads((folder / STAGE_STATE).read_text()).get("files")
    except (OSError, ValueError):
        return False
    if recorded is None or checkpoint_files(folder) == recorded:
        return True
    log.warning("checkpoint %s is damaged (files differ from what it recorded at save time): skipped", folder)
    return False


def stage_fingerprint(
    options: "TrainOptions", method_options, inputs: list[str], previous: str | None, extra: dict | None = None
) -> dict:
    """What a stage computes from, recorded in each checkpoint so that only the same stage resumes it:
    its options and method options (less :data:`EXECUTION_OPTIONS`), ``extra`` (a sham's learning-rate
    scale), and the sha256 of every input file (``inputs``: pairs and reference log-probs, earlier
    objectives' files) and of the previous stage's adapter weights."""
    from seqpref.provenance import file_sha256

    files = [str(p) for p in inputs if p] + ([str(Path(previous) / "adapter_model.safetensors")] if previous else [])
    recorded = {k: v for k, v in recorded_options(options, method_options).items() if k not in EXECUTION_OPTIONS}
    return json.loads(
        json.dumps(
            {
                "options": recorded,
                "extra": extra or {},
                "inputs": [file_sha256(p) for p in files],
                "input_paths": files,
            },
            default=str,
        )
    )


def fingerprint_changes(saved: dict | None, current: dict) -> list[str]:
    """What differs between the fingerprint a checkpoint was saved with and the stage's now: option names
    with old → new values, ``extra``, and the input files whose bytes changed (empty: the same stage)."""
    from seqpref.guard import changed_options

    if saved is None:
        return ["no fingerprint (saved before checkpoints recorded one)"]
    changes = changed_options(
        {"options": saved.get("options", {}), "extra": saved.get("extra", {})},
        {"options": current["options"], "extra": current["extra"]},
    )
    old, new = saved.get("inputs", []), current["inputs"]
    if len(old) != len(new):
        changes.append(f"inputs: {len(old)} files -> {len(new)}")
    changes += [f"input {path} changed" for path, a, b in zip(current["input_paths"], old, new) if a != b]
    return changes


def last_checkpoint(directory: str | os.PathLike, fingerprint: dict | None = None) -> str | None:
    """The newest complete, intact checkpoint (``checkpoint-N`` holding our :data:`STAGE_STATE`, written
    last, with every file at the size it recorded) in ``directory``, or None; a checkpoint cut short by a
    kill, or truncated by a crash, is skipped for the one before it. With ``fingerprint``
    (:func:`stage_fingerprint`), checkpoints saved by a stage with other options or inputs are removed,
    with a log line naming what differed: the stage then starts afresh rather than resume another's
    optimiser, schedule and batch position."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    complete = [p for p in directory.glob("checkpoint-*") if (p / STAGE_STATE).is_file() and p.name[11:].isdigit()]
    for folder in sorted(complete, key=lambda p: int(p.name[11:]), reverse=True):
        if not _intact(folder):
            continue
        if fingerprint is not None:
            changes = fingerprint_changes(
                json.loads((folder / STAGE_STATE).read_text()).get("fingerprint"), fingerprint
            )
            if changes:
                log.warning(
                    "checkpoint %s was saved by another stage (%s): removed; the stage starts afresh",
                    folder,
                    "; ".join(changes),
                )
                for stale in directory.glob("checkpoint-*"):
                    shutil.rmtree(stale, ignore_errors=True)
                return None
        return str(folder)
    return None
