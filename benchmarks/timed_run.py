"""One timed ``snakemake --cores N`` run of this checkout, for the benchmarks that run a study."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake_seconds(cores: int, targets: list, configfiles: list) -> float:
    """Run ``snakemake --cores cores TARGETS --configfile CONFIGFILES`` in the repository (raising on
    failure) and return its wall seconds. ``targets`` and ``configfiles`` are paths (str or Path);
    relative ones are relative to the repository."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), *map(str, targets)]
        + ["--configfile", *map(str, configfiles)],
        cwd=REPO,
        check=True,
    )
    return time.perf_counter() - start
