"""The retrain guard: a changed training option never deletes finished adapters without an opt-in.

Snakemake reruns a training job when its params change and deletes the job's outputs first.
``protected()`` was meant to stop that, but it checks ``os.access``, which root passes, so as root
(containers, many clusters' node images) a changed learning rate silently threw finished adapters
away. The workflow therefore compares, when it is parsed, the options each finished adapter was
trained with (its ``training_options.json``) with the options the current config gives that stage,
and stops, naming the adapters and the options that changed, unless the config opts in with
``allow_retrain: true``.

Anything else that reruns a finished stage (a changed input, a diagnostics option, ``--forcerun``,
an opt-in) cannot delete it either: when a run starts (Snakemake's ``onstart``, after the DAG is
planned and before any job removes its outputs), every finished adapter is hard-linked into
``<results>/replaced/<UTC time>/`` (:func:`keep_aside`); when the run ends, or when the next one
starts after a kill, the links of adapters that are still the same file are dropped
(:func:`release_unchanged`). What stays there is exactly the adapters a run deleted or retrained.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

OPT_IN = "allow_retrain"
#: training options that change how a stage runs, not what it computes: passed as job resources, so
#: changing them reruns nothing (and a checkpoint resumes across them)
EXECUTION_OPTIONS = ("checkpoint_every", "share_prompt")
_ABSENT = "(absent)"
#: where a run keeps the finished adapters it may replace, under the results folder
REPLACED = "replaced"


def changed_options(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the options whose values differ between two option dicts, ``name: old -> new``
    (nested dicts compared key by key). A key on one side only is a change too (``(absent)`` on the
    other): an option added to seqpref after the adapter was trained changes the stage's params, and
    Snakemake reruns, so deletes, the adapter for it."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, _ABSENT), current.get(key, _ABSENT)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_options(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(
                f"{prefix}{key}: {old if old is _ABSENT else repr(old)} -> {new if new is _ABSENT else repr(new)}"
            )
    return changes


def retrain_conflicts(results: str | Path, expected: Callable[[dict], dict | None]) -> Iterator[tuple[str, list[str]]]:
    """``(adapter directory, changed options)`` of every finished adapter under ``results`` whose
    recorded training options differ from ``expected(run)`` (the options the config now gives the
    stage; ``None`` when the config no longer has that run, which is then left alone)."""
    for path in sorted(Path(results).glob("adapters/*/*/*/seed*/*/training_options.json")):
        if not (path.parent / "adapter_model.safetensors").is_file():
            continue
        record = json.loads(path.read_text())
        current = expected(record["run"])
        if current is None:
            continue
        recorded = {k: v for k, v in record["options"].items() if k not in EXECUTION_OPTIONS}
        changes = changed_options(recorded, {k: v for k, v in current.items() if k not in EXECUTION_OPTIONS})
        if changes:
            yield str(path.parent), changes


def conflict_message(conflicts: list[tuple[str, list[str]]], shown: int = 10) -> str:
    """The error a user sees: which adapters would be retrained, which options changed, how to opt in."""
    options = sorted({change for _, changes in conflicts for change in changes})
    lines = [
        f"{len(conflicts)} finished adapter(s) were trained with other options than the config now gives "
        f"them; running would delete and retrain them.",
        "changed: " + "; ".join(options),
    ]
    if any(_ABSENT in change for change in options):
        lines.append(
            f"An option marked {_ABSENT} did not exist when the adapter was trained (a newer seqpref) or "
            "no longer does: its default changes what the stage computes."
        )
    lines += [f"  {directory}" for directory, _ in conflicts[:shown]]
    if len(conflicts) > shown:
        lines.append(f"  ... and {len(conflicts) - shown} more")
    lines.append(
        f"To retrain them, add `{OPT_IN}: true` to the config (or `--config {OPT_IN}=True`); to keep them, "
        "restore the options, or give this study its own `results:` folder."
    )
    return "\n".join(lines)


def finished_adapters(results: str | Path) -> list[Path]:
    """The stage folders under ``<results>/adapters`` that hold a finished adapter (its weights)."""
    return sorted(p.parent for p in Path(results).glob("adapters/**/adapter_model.safetensors"))


_COPIED = "copied.txt"  # in a kept run's folder: the files copied, not linked (compared by content)


def keep_aside(results: str | Path, now: float | None = None) -> Path | None:
    """Hard-link every file of every finished adapter under ``results`` into a new
    ``<results>/replaced/<UTC time>/adapters/...`` (same relative paths; a copy where the file system
    refuses a link); the folder, or None when there is no finished adapter. A link costs no space
    while the adapter stays: Snakemake deleting the original (to rerun its stage) leaves this one."""
    results = Path(results)
    folders = finished_adapters(results)
    if not folders:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    kept, n = results / REPLACED / stamp, 1
    while kept.exists():  # two runs in one second
        n += 1
        kept = results / REPLACED / f"{stamp}-{n}"
    copied = []
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            target = kept / path.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:  # e.g. a file system without hard links
                shutil.copy2(path, target)
                copied.append(str(path.relative_to(results)))
    if copied:
        (kept / _COPIED).write_text("\n".join(copied) + "\n")
    return kept


def _unchanged(kept: Path, original: Path, copied: bool) -> bool:
    """Whether ``original`` is still what ``kept`` holds: the same file (a link), or the same bytes (a copy)."""
    try:
        if copied:
            return original.read_bytes() == kept.read_bytes()
        return os.path.samefile(kept, original)
    except OSError:  # the original is gone
        return False


def release_unchanged(results: str | Path) -> list[Path]:
    """Drop what :func:`keep_aside` kept of each stage whose every file is still there, unchanged, and
    every folder this empties; returns the stage folders still kept under ``<results>/replaced``: the
    adapters a run deleted or retrained (a retrained stage is kept whole, even where it came out the
    same: the user sees that it was retrained)."""
    results = Path(results)
    root = results / REPLACED
    if not root.is_dir():
        return []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        copied = set((run / _COPIED).read_text().split()) if (run / _COPIED).is_file() else set()
        for stage in sorted({p.parent for p in run.rglob("*") if p.is_file() and p.name != _COPIED}):
            files = [p for p in stage.iterdir() if p.is_file()]
            if all(_unchanged(p, results / p.relative_to(run), str(p.relative_to(run)) in copied) for p in files):
                for p in files:
                    p.unlink()
        if (run / _COPIED).is_file() and not any(p.is_file() and p.name != _COPIED for p in run.rglob("*")):
            (run / _COPIED).unlink()
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()
        return []
    return sorted({p.parent for p in root.rglob("adapter_model.safetensors")})


def replaced_message(still_kept: list[Path], results: str | Path) -> str:
    """What a user is told at the end of a run that replaced finished adapters: how many, where."""
    root = Path(results) / REPLACED
    runs = sorted({p.relative_to(root).parts[0] for p in still_kept})
    return (
        f"{len(still_kept)} finished adapter(s) were deleted or retrained by a run; the earlier versions are kept "
        f"in {', '.join(str(root / r) for r in runs)} (same paths below it; delete the folder when no longer needed)."
    )
