"""Provenance stored in every Parquet file: what config, code and packages produced it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("seqpref", "torch", "transformers", "trl", "peft", "pandas", "pyarrow")


def config_hash(options: dict) -> str:
    """SHA-256 (first 16 hex digits) of ``options`` as canonical JSON: equal options, equal hash."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names=_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"absent"`` for one not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_commit(start: Path | None = None) -> str:
    """The commit of the checkout holding this package (``"+dirty"`` if modified), or ``"unknown"``."""
    where = start or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(step: str, options: dict) -> dict:
    """The provenance record of one step: its name, its options and their hash, versions, commit."""
    return {
        "step": step,
        "config_hash": config_hash(options),
        "options": options,
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
