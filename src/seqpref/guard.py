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
#: training options that change how a stage runs, not what it computes: passed as job resources, so
#: changing them reruns nothing (and a checkpoint resumes across them)
EXECUTION_OPTIONS = ("checkpoint_every", "share_prompt")
_ABSENT = "(absent)"


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
            changes.append(f"{prefix}{key}: {old if old is _ABSENT else repr(old)} -> {new if new is _ABSENT else repr(new)}")
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
    lines = [f"{len(conflicts)} finished adapter(s) were trained with other options than the config now gives "
             f"them; running would delete and retrain them.", "changed: " + "; ".join(options)]
    if any(_ABSENT in change for change in options):
        lines.append(f"An option marked {_ABSENT} did not exist when the adapter was trained (a newer seqpref) or "
                     "no longer does: its default changes what the stage computes.")
    lines += [f"  {directory}" for directory, _ in conflicts[:shown]]
    if len(conflicts) > shown:
        lines.append(f"  ... and {len(conflicts) - shown} more")
    lines.append(f"To retrain them, add `{OPT_IN}: true` to the config (or `--config {OPT_IN}=True`); to keep them, "
                 "restore the options, or give this study its own `results:` folder.")
    return "\n".join(lines)
