"""Check the stored upstream preference files and build the study files from them.

Run from the repository root (paths are relative to this script's folder)::

    python resources/public_prefs/build.py

``SOURCES.json`` lists each upstream file kept under ``upstream/`` exactly as its repository holds
it at the recorded commit, with its sha256, its licence file under ``LICENSES/`` (also checked), the
rows it holds, and the study file made from it: which :mod:`seqpref.loaders` function normalises
its rows, the pair-id prefix, and the pairs formed and dropped by reason. This script

1. checks every upstream and licence file's sha256 against ``SOURCES.json`` and stops, naming each
   file that differs, before anything is written;
2. reads each upstream file with :func:`seqpref.loaders.read_rows`, normalises it with the named
   loader (the rules live there, once: the study file holds exactly the loader's pairs, in upstream
   row order, with the loader's ``pair_id``), checks the rows read and the counts against
   ``SOURCES.json``, and writes the study file as JSONL with columns ``pair_id``, ``prompt`` (a
   string, or a list of ``{"role", "content"}`` messages), ``chosen``, ``rejected``.

The output is byte-identical on every run. Needs pandas and seqpref (installed, or ``src/`` of this
repository, which is put on the path when seqpref is not installed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES_NAME = "SOURCES.json"
STUDY_COLUMNS = ("pair_id", "prompt", "chosen", "rejected")

if importlib.util.find_spec("seqpref") is None:
    sys.path.insert(0, str(HERE.parents[1] / "src"))

from seqpref import loaders  # noqa: E402


class SourceError(RuntimeError):
    """A stored file or a count that does not match ``SOURCES.json``; the message names each."""


def read_sources(folder: Path = HERE) -> list[dict]:
    """The entries of ``folder/SOURCES.json`` (one per upstream file), in their order."""
    return json.loads((folder / SOURCES_NAME).read_text(encoding="utf-8"))["sources"]


def sha256(path: Path) -> str:
    """The sha256 hex digest of the bytes of ``path``."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksum_problems(folder: Path, sources: list[dict]) -> list[str]:
    """One line per upstream or licence file of ``sources`` that is missing from ``folder`` or
    whose sha256 differs from the recorded one; empty when every file matches."""
    problems = []
    for entry in sources:
        for name, expected in ((entry["file"], entry["sha256"]), (entry["licence_file"], entry["licence_sha256"])):
            path = folder / name
            if not path.exists():
                problems.append(f"{name}: missing")
            elif (actual := sha256(path)) != expected:
                problems.append(f"{name}: sha256 {actual}, expected {expected} ({SOURCES_NAME})")
    return problems


def verify(folder: Path, sources: list[dict]) -> None:
    """Raise :class:`SourceError` listing every file of :func:`checksum_problems`; None when all match."""
    problems = checksum_problems(folder, sources)
    if problems:
        raise SourceError(
            "stored upstream files differ from the recorded ones; restore them from the "
            "recorded commits (nothing was written):\n  " + "\n  ".join(problems)
        )


def study_pairs(folder: Path, entry: dict) -> list[dict]:
    """The study rows (:data:`STUDY_COLUMNS`) of one ``SOURCES.json`` entry: its upstream file read
    and normalised by its loader, checked against the entry's ``rows`` and ``study`` counts."""
    study = entry["study"]
    rows = loaders.read_rows(str(folder / entry["file"]))
    pairs, dropped = getattr(loaders, study["loader"])(rows, prefix=study["prefix"])
    counts = {"rows": len(rows), "pairs": len(pairs), "dropped": {k: len(v) for k, v in dropped.items()}}
    recorded = {"rows": entry["rows"], "pairs": study["pairs"], "dropped": study["dropped"]}
    if counts != recorded:
        raise SourceError(f"{entry['file']}: {study['loader']} gives {counts}, {SOURCES_NAME} records {recorded}")
    return [{c: row[c] for c in STUDY_COLUMNS} for row in pairs.to_dict("records")]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as JSONL (UTF-8, ``\\n`` line ends, non-ASCII kept), checking unique ids."""
    assert len({row["pair_id"] for row in rows}) == len(rows), f"{path}: duplicate pair_id"
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def build(folder: Path = HERE) -> dict[str, int]:
    """Verify ``folder``'s upstream files, then write its study files; returns pairs per study file."""
    sources = read_sources(folder)
    verify(folder, sources)
    studies = {entry["study"]["file"]: study_pairs(folder, entry) for entry in sources}  # every check first
    for name, rows in studies.items():
        write_jsonl(folder / name, rows)
    return {name: len(rows) for name, rows in studies.items()}


def main() -> None:
    """Build the study files beside this script; exit with the problems when a check fails."""
    try:
        written = build(HERE)
    except SourceError as error:
        sys.exit(f"{Path(__file__).name}: {error}")
    for name, count in written.items():
        print(f"{name}: {count} pairs")


if __name__ == "__main__":
    main()
