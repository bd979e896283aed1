"""A benchmark's numbers as JSON, with what is needed to know where they came from.

Every benchmark whose numbers the documentation quotes takes ``--json PATH`` (:func:`json_argument`)
and writes one object there (:func:`write_record`): its measurements under ``"result"`` beside the
command line, the commit, the date, the CPU model and the CPUs the process may use. ``docs/render.py`` renders the
pages' numbers from the copies kept in ``docs/data/bench/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: what a benchmark's numbers can depend on: a change there (or an untracked file) marks the record dirty
MEASURED = (
    "src",
    "benchmarks",
    "workflow",
    "Snakefile",
    "config",
    "tests/workflow/configs",
    "pyproject.toml",
    "environment.yml",
)


def json_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` to ``parser`` (default: none, nothing written)."""
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the numbers to PATH as JSON (docs/data/bench/ keeps the copies the docs render)",
    )


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    """The checkout's commit, ``+dirty`` when anything that can change a measurement (:data:`MEASURED`:
    the code, the workflow, the configs) differs from it or is untracked there; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *MEASURED], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = bool(status.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def write_record(path: Path | None, result: dict) -> None:
    """Write ``{"command", "commit", "date", "cpu", "cpus", "result": result}`` to ``path`` (no-op for None).

    ``result`` must be JSON-serialisable: seconds, rates and sizes in the units its keys name.
    """
    if path is None:
        return
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    record = {
        "command": "python " + shlex.join([script.as_posix(), *sys.argv[1:]]),
        "commit": commit(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "result": result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
