"""The retrain guard: a changed training option never deletes finished adapters without an opt-in.

Snakemake reruns a training job when its params change and deletes the job's outputs first.
``protected()`` was meant to stop that, but it checks ``os.access``, which root passes, so as root
(containers, many clusters' node images) a changed learning rate silently threw finished adapters
away. The workflow therefore compares, when it is parsed, the options each finished adapter was
trained with (its ``training_options.json``) with the options the current config gives that stage,
and stops, naming the adapters and the options that changed, unless the config opts in with
``allow_retrain: true``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

OPT_IN = "allow_retrain"


def changed_options(recorded: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the options whose values differ between two option dicts (nested dicts are
    compared key by key; a key present on one side only is skipped: an option added to seqpref
    after the adapter was trained is no change of the user's)."""
    changes = []
    for key in sorted(set(recorded) & set(current)):
        old, new = recorded[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_options(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
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
        changes = changed_options(record["options"], current)
        if changes:
            yield str(path.parent), changes


def conflict_message(conflicts: list[tuple[str, list[str]]], shown: int = 10) -> str:
    """The error a user sees: which adapters would be retrained, which options changed, how to opt in."""
    options = sorted({change for _, changes in conflicts for change in changes})
    lines = [f"{len(conflicts)} finished adapter(s) were trained with other options than the config now gives "
             f"them; running would delete and retrain them.", "changed: " + "; ".join(options)]
    lines += [f"  {directory}" for directory, _ in conflicts[:shown]]
    if len(conflicts) > shown:
        lines.append(f"  ... and {len(conflicts) - shown} more")
    lines.append(f"To retrain them, add `{OPT_IN}: true` to the config (or `--config {OPT_IN}=True`); to keep them, "
                 "restore the options, or give this study its own `results:` folder.")
    return "\n".join(lines)
