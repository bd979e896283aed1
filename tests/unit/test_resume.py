"""`make resume` fails closed: a lock stays whenever SLURM cannot say that no job of the run is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqpref import resume


def _squeue(tmp_path: Path, monkeypatch, script: str, configured: bool = True) -> None:
    """Put a fake ``squeue`` running ``script`` (bash) first on the PATH, with a cluster configured
    (``SLURM_CONF``) unless not ``configured``."""
    if configured:
        (tmp_path / "slurm.conf").write_text("ClusterName=test\n")
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    else:
        monkeypatch.delenv("SLURM_CONF", raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "squeue").write_text(f"#!/bin/bash\n{script}\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _locked(tmp_path: Path) -> Path:
    workdir = tmp_path / "run"
    (workdir / resume.LOCKS).mkdir(parents=True)
    (workdir / resume.LOCKS / "0.output.lock").write_text("")
    return workdir.resolve()


def test_an_squeue_error_keeps_the_lock_and_says_how_to_force(tmp_path, monkeypatch):
    _squeue(tmp_path, monkeypatch, 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
    workdir = _locked(tmp_path)
    unlocked = tmp_path / "unlocked"
    with pytest.raises(SystemExit, match="squeue failed.*Unable to contact.*lock stays.*--force-unlock"):
        resume.unlock_if_stale(workdir, ["bash", "-c", f"touch {unlocked}"], [])
    assert not unlocked.exists()
    assert resume.unlock_if_stale(workdir, ["bash", "-c", f"touch {unlocked}"], [], force=True) and unlocked.exists()


def test_an_squeue_that_hangs_keeps_the_lock(tmp_path, monkeypatch):
    _squeue(tmp_path, monkeypatch, "sleep 10")
    with pytest.raises(SystemExit, match="did not answer within 0.5 s"):
        resume.live_slurm_jobs(_locked(tmp_path), timeout=0.5)


def test_a_job_without_a_working_directory_keeps_the_lock(tmp_path, monkeypatch):
    _squeue(tmp_path, monkeypatch, 'echo "123|(null)"')
    with pytest.raises(SystemExit, match="no working directory for job 123"):
        resume.live_slurm_jobs(_locked(tmp_path))


def test_a_job_in_the_run_through_a_symlink_is_found(tmp_path, monkeypatch):
    workdir = _locked(tmp_path)
    (tmp_path / "link").symlink_to(workdir)
    _squeue(tmp_path, monkeypatch, f'echo "77|{tmp_path / "link"}"; echo "78|/elsewhere"')
    assert resume.live_slurm_jobs(workdir) == ["77"]
    with pytest.raises(SystemExit, match="SLURM jobs 77"):
        resume.unlock_if_stale(workdir, ["false"], [])


@pytest.mark.skipif(
    resume.slurm_configured() and not os.environ.get("SLURM_CONF"), reason="this machine has a SLURM cluster configured"
)
def test_slurm_installed_without_a_cluster_has_no_job_of_the_run(tmp_path, monkeypatch):
    """A workstation with SLURM's packages but no slurm.conf: squeue fails, and no job can be there."""
    _squeue(tmp_path, monkeypatch, 'echo "Could not establish a configuration source" >&2; exit 1', configured=False)
    assert resume.live_slurm_jobs(_locked(tmp_path)) == []
