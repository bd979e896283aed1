"""Pin a local job to a GPU of its own: ``python -m seqpref.gpus -- CMD [ARG ...]``.

Snakemake schedules local jobs by count (``--resources gpu=N``) but does not say *which* GPU a job
gets (snakemake issue #281), so every job would start on GPU 0. This wrapper claims a free GPU by
taking an exclusive ``flock`` on one lock file per GPU (per slot, with ``SEQPREF_JOBS_PER_GPU`` > 1),
sets ``CUDA_VISIBLE_DEVICES`` to it and ``exec``s CMD, which inherits the lock. The operating system
releases the lock when CMD exits, however it exits, so a crashed or killed job never keeps a GPU. When
every GPU is taken (several snakemake runs on one machine, or no ``--resources gpu=N`` limit), the job
waits for one to free up.

On a machine without GPUs CMD goes through ``seqpref.warm`` (forked from a server that has imported
torch when it is ``python -m ...``); with GPUs it is always a fresh process, whose CUDA starts clean.

CMD runs unpinned, as it is, when no GPU is visible (``CUDA_VISIBLE_DEVICES`` unset and no GPU
listed by ``nvidia-smi``), when SLURM assigned the job's GPUs (``SLURM_JOB_ID`` set), or when
``SEQPREF_GPU_PINNING=0``. Lock files live in ``SEQPREF_GPU_LOCKS`` (default
``$XDG_RUNTIME_DIR/seqpref-gpus`` where that is set, else ``/tmp/seqpref-gpus-<uid>``), shared by every
seqpref run of the user on the machine. The folder must be the user's own, private, and no symlink
(:func:`private_lock_dir`): in a shared ``/tmp`` another user could otherwise create it first and hold
every GPU's lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from seqpref import warm

POLL_SECONDS = 1.0


def visible_gpus(environ: dict | None = None) -> list[str]:
    """GPU ids a job may use: ``CUDA_VISIBLE_DEVICES``'s entries when set, else ``nvidia-smi``'s indices.

    Returns ids as strings (indices or UUIDs); empty when there is no GPU.
    """
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def pinning_wanted(environ: dict | None = None) -> bool:
    """False under SLURM (it assigns GPUs itself) or with ``SEQPREF_GPU_PINNING=0``."""
    environ = os.environ if environ is None else environ
    return "SLURM_JOB_ID" not in environ and environ.get("SEQPREF_GPU_PINNING", "1") != "0"


def default_lock_dir(environ: dict | None = None) -> Path:
    """Where GPU locks live: ``SEQPREF_GPU_LOCKS``, else ``$XDG_RUNTIME_DIR/seqpref-gpus`` (a private
    per-user folder where the session has one), else ``/tmp/seqpref-gpus-<uid>``."""
    return warm.user_runtime_dir("seqpref-gpus", "SEQPREF_GPU_LOCKS", environ)


def private_lock_dir(lock_dir: str | os.PathLike) -> Path:
    """Create ``lock_dir`` (mode 0700) if absent and check that it is a real folder owned by this user that
    no one else may write to; returns it. Raises ``PermissionError`` naming the folder and what is wrong."""
    import stat

    lock_dir = Path(lock_dir)
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(lock_dir)
    problems = []
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problems.append("it is not a folder (a symlink?)")
    if info.st_uid != os.getuid():
        problems.append(f"it belongs to uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o022:
        problems.append(f"others may write to it (mode {stat.S_IMODE(info.st_mode):o})")
    if problems:
        raise PermissionError(
            f"GPU lock folder {lock_dir}: {'; '.join(problems)}. Remove it, or set "
            "SEQPREF_GPU_LOCKS to a folder of your own"
        )
    return lock_dir


def claim_gpu(
    gpus: list[str],
    lock_dir: str | os.PathLike,
    slots: int = 1,
    poll: float = POLL_SECONDS,
    timeout: float | None = None,
) -> tuple[str, int]:
    """Take the first free (GPU, slot) lock of ``gpus``; returns ``(gpu id, open lock fd)``.

    Waits (polling every ``poll`` seconds) while all are taken; raises ``TimeoutError`` after
    ``timeout`` seconds (None: wait forever), ``PermissionError`` when ``lock_dir`` is not a private
    folder of this user's (:func:`private_lock_dir`). The lock lasts as long as the fd is open in any process.
    """
    lock_dir = private_lock_dir(lock_dir)
    start, announced = time.monotonic(), False
    while True:
        for slot in range(slots):
            for gpu in gpus:
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", gpu)
                fd = os.open(lock_dir / f"gpu-{name}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return gpu, fd
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no free GPU among {gpus} after {timeout:.0f}s (locks in {lock_dir})")
        if not announced:
            print(f"seqpref.gpus: every GPU of {gpus} is taken; waiting for one", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll)


def main(argv=None) -> None:
    """CLI: ``python -m seqpref.gpus -- CMD ...``; execs CMD pinned to one free GPU (or as is)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m seqpref.gpus -- CMD [ARG ...]")
    present = visible_gpus()
    gpus = present if pinning_wanted() else []
    if gpus:
        lock_dir = default_lock_dir()
        slots = max(1, int(os.environ.get("SEQPREF_JOBS_PER_GPU", "1")))
        gpu, fd = claim_gpu(gpus, lock_dir, slots)
        os.set_inheritable(fd, True)  # CMD holds the lock until it exits
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        print(f"seqpref.gpus: pinned to GPU {gpu}", file=sys.stderr, flush=True)
    if present:  # CUDA must be initialised after a fork, never before: on a GPU machine, a fresh process
        os.execvp(argv[0], argv)
    warm.run(argv)  # CPU only: fork CMD from a warm server when it is `python -m ...` (seqpref.warm), else exec


if __name__ == "__main__":
    main()
