"""Finish a run that was killed: ``python -m seqpref.resume [SNAKEMAKE ARGS...]`` (``make resume``).

After ``kill -9`` of snakemake and its jobs (a lost terminal, an out-of-memory kill, a node reboot),
a plain ``snakemake`` stops on the killed run's lock. This command removes that lock only when no
snakemake and none of our steps still runs in the working directory (on this machine, found
through /proc) and no
SLURM job of it is still queued or running (``squeue``, where SLURM is installed): a live run's lock
is never taken. Then it runs ``snakemake`` with the given arguments. The workflow's profiles set
``rerun-incomplete: true``, so the jobs cut short are rerun (a training stage from its newest
checkpoint) and nothing that finished is recomputed.

It fails closed: when ``squeue`` errors, does not answer within :data:`SQUEUE_TIMEOUT` seconds, or lists
a job whose working directory it does not give, the lock stays and the command says why; after checking
by hand, ``--force-unlock`` (``make resume ARGS=--force-unlock``) removes it anyway. Working directories
are compared after resolving symlinks.

Not seen: a snakemake started from another machine on a shared filesystem; stop that one first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCKS = Path(".snakemake/locks")
#: seconds to wait for ``squeue``
SQUEUE_TIMEOUT = 30
FORCE = "--force-unlock"
#: where SLURM's clients find their configuration (besides $SLURM_CONF); configless clients cache it in /run
SLURM_CONFIGS = (Path("/etc/slurm/slurm.conf"), Path("/etc/slurm-llnl/slurm.conf"), Path("/run/slurm/conf/slurm.conf"))
_HOW_TO_FORCE = f"check with squeue / scancel yourself, then rerun with {FORCE} (make resume ARGS={FORCE})"


def _runs_here(argv: list[str]) -> bool:
    """Whether a command line is snakemake's (``snakemake ...``, ``python -m snakemake ...``) or one of
    our steps' (``python -m seqpref.<step>``, a job a killed snakemake may have left running)."""
    head = argv[:4]
    return any(Path(arg).name == "snakemake" for arg in head) or any(
        arg.startswith("seqpref.") and head[i - 1] == "-m" for i, arg in enumerate(head) if i
    )


def live_runs(workdir: Path, exclude: set[int] | None = None) -> list[int]:
    """PIDs of processes on this machine running snakemake or one of our steps with ``workdir`` as
    their working directory (from /proc; processes we may not inspect are skipped), other than
    ``exclude`` and this process."""
    exclude = (exclude or set()) | {os.getpid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == workdir and _runs_here(argv):
            found.append(int(entry.name))
    return sorted(found)


def slurm_configured() -> bool:
    """Whether this machine's SLURM clients have a cluster: ``$SLURM_CONF`` or a slurm.conf in
    :data:`SLURM_CONFIGS` (SLURM packages installed without one, as on a workstation, have none)."""
    configured = os.environ.get("SLURM_CONF")
    return bool(configured and Path(configured).is_file()) or any(p.is_file() for p in SLURM_CONFIGS)


def live_slurm_jobs(workdir: Path, timeout: float = SQUEUE_TIMEOUT) -> list[str]:
    """IDs of this user's SLURM jobs, pending or running, whose working directory is ``workdir``
    (symlinks resolved); empty where SLURM's ``squeue`` is not installed or has no cluster configured
    (:func:`slurm_configured`). Raises ``SystemExit`` saying
    why, and how to force the unlock, when ``squeue`` fails, times out, or lists a job without a working
    directory: what it cannot see may be a job of this run."""
    if shutil.which("squeue") is None or not slurm_configured():
        return []  # no SLURM client, or one with no cluster to ask: no job of this run can be on it
    try:
        listing = subprocess.run(
            ["squeue", "--me", "-h", "-o", "%i|%Z"], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"squeue did not answer within {timeout:g} s: cannot tell whether jobs of the run in "
            f"{workdir} are still queued, so its lock stays; {_HOW_TO_FORCE}"
        ) from None
    if listing.returncode != 0:
        raise SystemExit(
            f"squeue failed (exit {listing.returncode}: {listing.stderr.strip()[:200]}): cannot tell "
            f"whether jobs of the run in {workdir} are still queued, so its lock stays; {_HOW_TO_FORCE}"
        )
    jobs, target = [], workdir.resolve()
    for line in filter(None, listing.stdout.splitlines()):
        job, _, where = line.partition("|")
        if not where.strip() or where.strip() in ("(null)", "N/A"):
            raise SystemExit(
                f"squeue gives no working directory for job {job.strip()}: it may be this run's, so "
                f"the lock of {workdir} stays; {_HOW_TO_FORCE}"
            )
        if Path(where.strip()).resolve() == target:
            jobs.append(job.strip())
    return jobs


def unlock_if_stale(workdir: Path, snakemake: list[str], args: list[str], force: bool = False) -> bool:
    """Remove a killed run's lock in ``workdir`` (``snakemake --unlock`` with ``args``, which name the
    same workflow and config); returns whether there was one. Raises ``SystemExit`` naming what still
    runs when the lock is a live run's, or why it cannot tell (:func:`live_slurm_jobs`); ``force`` skips
    the SLURM check (the processes on this machine are still checked)."""
    locks = workdir / LOCKS
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    running = live_runs(workdir)
    jobs = [] if force else live_slurm_jobs(workdir)
    if running or jobs:
        raise SystemExit(
            f"{workdir} is locked by a run that is still going ("
            + "; ".join(
                filter(
                    None, [running and f"PIDs {', '.join(map(str, running))}", jobs and f"SLURM jobs {', '.join(jobs)}"]
                )
            )
            + "): wait for it, or stop it (kill / scancel) and run this again"
        )
    subprocess.run([*snakemake, "--unlock", *args], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    return True


def main(argv: list[str] | None = None) -> int:
    """Unlock a killed run's working directory if no part of it still runs, then run snakemake with
    ``argv``; returns snakemake's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    force = FORCE in args
    args = [a for a in args if a != FORCE]
    snakemake = [sys.executable, "-m", "snakemake"]
    if unlock_if_stale(Path.cwd().resolve(), snakemake, [a for a in args if a not in ("-n", "--dry-run")], force):
        print(
            "seqpref.resume: removed the lock of a killed run (no snakemake or SLURM job of it is left)",
            file=sys.stderr,
        )
    return subprocess.run([*snakemake, *args]).returncode


if __name__ == "__main__":
    sys.exit(main())
