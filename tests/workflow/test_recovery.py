"""One-command recovery: snakemake and all its jobs are killed with SIGKILL, once while a stage
trains and once while a stage is scored; each time `python -m seqpref.resume` (what `make resume`
runs) finishes the run from where it was, recomputing no finished output, and the pair scores equal
those of an uninterrupted run bit for bit."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import conflicting_only, conflicting_pairs, copy_workflow, snakemake

from seqpref import resume

pytestmark = pytest.mark.workflow

TARGET = "results/tables/pairs.parquet"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
NOT_OUTPUTS = ("logs", "benchmarks", "checkpoints")  # rewritten by a rerun job, or not an output


def _start(workdir: Path, *command: str) -> subprocess.Popen:
    """Start ``command`` in its own process group (so that one killpg reaches every job)."""
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=workdir,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_when(run: subprocess.Popen, moment, what: str, seconds: float = 300) -> None:
    """SIGKILL ``run``'s whole process group as soon as ``moment()`` holds."""
    deadline = time.monotonic() + seconds
    while not moment():
        assert run.poll() is None, f"the run ended before {what}:\n{run.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def _step_running(workdir: Path, step: str) -> bool:
    """Whether a ``python -m seqpref.<step>`` job runs in ``workdir``."""
    for pid in resume.live_runs(workdir.resolve()):
        try:
            if f"seqpref.{step}" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0"):
                return True
        except OSError:
            pass
    return False


def _checkpointed_stages(workdir: Path) -> set[Path]:
    """The stages (run folder / stageK, relative to results/checkpoints) holding a complete checkpoint."""
    root = workdir / "results/checkpoints"
    return {
        state.parent.parent.relative_to(root)
        for state in root.rglob("checkpoint-*/seqpref_state.json")
        if state.parent.parent.name.startswith("stage")
    }  # train_stage's (a sham's logs live elsewhere)


def _train_log(workdir: Path, stage: Path) -> str:
    """The training log of ``stage`` (as :func:`_checkpointed_stages` names it), empty if none yet."""
    log = workdir / "results/logs/train_stage" / stage.with_suffix(".log")
    return log.read_text() if log.exists() else ""


def _incomplete(workdir: Path) -> set[Path]:
    """The outputs snakemake marked incomplete (jobs that were running): its markers are files named
    by the output's path, urlsafe-base64 encoded and split into parts prefixed with '@'."""
    root = workdir / ".snakemake/incomplete"
    marked = set()
    for marker in root.rglob("*"):
        if marker.is_file() and marker.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in marker.relative_to(root).parts)
            marked.add(workdir / base64.urlsafe_b64decode(encoded).decode())
    return marked


def _finished(workdir: Path) -> dict[Path, int]:
    """Outputs on disk that no killed job was writing: path → mtime (ns). A killed job's folder (an
    adapter's README and training options beside its declared weights) counts as the job's."""
    incomplete = _incomplete(workdir)
    folders = {p.parent for p in incomplete if "adapters" in p.parts}  # a stage's own folder, not a shared one
    return {
        p: p.stat().st_mtime_ns
        for p in (workdir / "results").rglob("*")
        if p.is_file()
        and p not in incomplete
        and p.parent not in folders
        and p.relative_to(workdir / "results").parts[0] not in NOT_OUTPUTS
    }


def test_killed_twice_and_resumed_equals_an_uninterrupted_run(lab_run, tmp_path):
    workdir = copy_workflow(tmp_path, conflicting_only(tmp_path / "one_setting.yaml", checkpoint_every=2))

    # 1. killed while a stage trains, after its first checkpoint
    run = _start(workdir, "-m", "snakemake", "--cores", "2", TARGET)
    _kill_when(
        run,
        lambda: any((workdir / "results/checkpoints").rglob("checkpoint-*/seqpref_state.json")),
        "training checkpoint",
    )
    checkpointed = sorted(_checkpointed_stages(workdir))
    assert checkpointed
    assert (workdir / ".snakemake/locks").exists() and any((workdir / ".snakemake/locks").iterdir())
    locked = snakemake(workdir, "--cores", "2", TARGET, check=False)  # what the command is for
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    finished_1 = _finished(workdir)

    # 2. resumed, and killed again while a trained stage is scored
    run = _start(workdir, "-m", "seqpref.resume", "--cores", "2", TARGET)
    _kill_when(
        run,
        lambda: (
            any((workdir / "results/adapters").rglob("adapter_model.safetensors")) and _step_running(workdir, "score")
        ),
        "scoring job after a trained stage",
    )
    finished_2 = _finished(workdir)
    # a stage's log is rewritten by each of its runs: read what the reruns said after each of them (a rerun
    # cut short by kill 2 after it resumed and finished training has removed its checkpoint, so the
    # run after it starts afresh, correctly, and its log no longer shows the resumption)
    said = {stage: [_train_log(workdir, stage)] for stage in checkpointed}

    # 3. resumed to the end
    final = subprocess.run(
        [sys.executable, "-m", "seqpref.resume", "--cores", "2", TARGET],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-5000:]
    assert "removed the lock of a killed run" in final.stderr
    for stage in checkpointed:
        said[stage].append(_train_log(workdir, stage))
        # the first rerun of a stage killed after a checkpoint resumes from it, in run 2 or, if run 2 did not
        # reach it, in run 3
        assert any("resuming from" in text for text in said[stage]), (
            f"{stage} restarted from step 0 after its checkpoint"
        )

    for before in (finished_1, finished_2):
        recomputed = [str(p.relative_to(workdir)) for p, mtime in before.items() if p.stat().st_mtime_ns != mtime]
        assert not recomputed, f"finished outputs were recomputed: {recomputed}"
    assert len(finished_2) > len(finished_1) > 0
    pd.testing.assert_frame_equal(conflicting_pairs(workdir), conflicting_pairs(lab_run))


def test_resume_unlocks_only_a_dead_runs_lock(tmp_path):
    """A lock held by a run that is still going is never removed (the command names its PIDs); once
    that run is gone, the lock is removed with ``snakemake --unlock``."""
    locks = tmp_path / ".snakemake/locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text("")
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=tmp_path)  # argv[0] is snakemake
    try:
        time.sleep(0.3)
        with pytest.raises(SystemExit, match=rf"still going \(PIDs {live.pid}\)"):
            resume.unlock_if_stale(tmp_path.resolve(), ["false"], [])  # "false": unlocking would fail loudly
    finally:
        live.kill()
        live.wait()
    unlock = tmp_path / "unlocked"
    assert resume.unlock_if_stale(tmp_path.resolve(), ["bash", "-c", f"touch {unlock}"], [])  # --unlock: its $0
    assert unlock.exists()
