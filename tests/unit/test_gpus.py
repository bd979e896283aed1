"""seqpref.gpus: local jobs pinned to distinct GPUs through lock files (no GPU needed: the ids are
CUDA_VISIBLE_DEVICES entries, and what the wrapped command sees is checked)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqpref import gpus

SHOW = "import os, sys, time; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'), flush=True); time.sleep(float(sys.argv[1]))"


def _start(tmp_path, seconds, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environ.update({"SEQPREF_GPU_LOCKS": str(tmp_path / "locks"), **env})
    return subprocess.Popen(
        [sys.executable, "-m", "seqpref.gpus", "--", sys.executable, "-c", SHOW, str(seconds)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_jobs_get_distinct_gpus_and_a_third_waits(tmp_path):
    first = _start(tmp_path, 3, CUDA_VISIBLE_DEVICES="3,5")
    second = _start(tmp_path, 3, CUDA_VISIBLE_DEVICES="3,5")
    seen = {first.stdout.readline().strip(), second.stdout.readline().strip()}
    assert seen == {"3", "5"}
    started = time.monotonic()
    third = _start(tmp_path, 0, CUDA_VISIBLE_DEVICES="3,5")
    out, err = third.communicate(timeout=60)
    assert time.monotonic() - started > 1.0  # it waited for a GPU to free up
    assert out.strip() in {"3", "5"} and "waiting" in err
    for job in (first, second):
        job.communicate(timeout=60)
        assert job.returncode == 0


def test_a_killed_job_releases_its_gpu(tmp_path):
    job = _start(tmp_path, 60, CUDA_VISIBLE_DEVICES="7")
    assert job.stdout.readline().strip() == "7"
    job.kill()
    job.wait(timeout=30)
    out, _ = _start(tmp_path, 0, CUDA_VISIBLE_DEVICES="7").communicate(timeout=30)
    assert out.strip() == "7"


def test_exit_status_and_unpinned_cases(tmp_path):
    environ = {**os.environ, "SEQPREF_GPU_LOCKS": str(tmp_path / "locks"), "CUDA_VISIBLE_DEVICES": "0"}
    failed = subprocess.run(
        [sys.executable, "-m", "seqpref.gpus", "--", sys.executable, "-c", "raise SystemExit(3)"], env=environ
    )
    assert failed.returncode == 3
    # under SLURM the job's own CUDA_VISIBLE_DEVICES is kept as is
    out, _ = _start(tmp_path, 0, CUDA_VISIBLE_DEVICES="2,4", SLURM_JOB_ID="99").communicate(timeout=30)
    assert out.strip() == "2,4"
    out, _ = _start(tmp_path, 0, CUDA_VISIBLE_DEVICES="2,4", SEQPREF_GPU_PINNING="0").communicate(timeout=30)
    assert out.strip() == "2,4"


def test_visible_gpus():
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "0, 2,GPU-ab12"}) == ["0", "2", "GPU-ab12"]
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpus.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpus.pinning_wanted({}) and not gpus.pinning_wanted({"SLURM_JOB_ID": "1"})


def test_slots_share_a_gpu_and_timeout(tmp_path):
    first = gpus.claim_gpu(["0"], tmp_path, slots=2)
    second = gpus.claim_gpu(["0"], tmp_path, slots=2)
    assert first[0] == second[0] == "0"
    with pytest.raises(TimeoutError, match="no free GPU"):
        gpus.claim_gpu(["0"], tmp_path, slots=2, poll=0.05, timeout=0.2)
    os.close(first[1])
    assert gpus.claim_gpu(["0"], tmp_path, slots=2, timeout=1)[0] == "0"


def test_attention_is_flash_only_on_cuda_half_precision_with_flash_attn(monkeypatch):
    import importlib.util

    import torch

    from seqpref.base_model import resolve_attention

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a)
    )
    assert resolve_attention(None, "cuda", torch.bfloat16) == "flash_attention_2"
    assert resolve_attention(None, "cuda", torch.float32) is None  # flash-attn needs half precision
    assert resolve_attention(None, "cpu", torch.bfloat16) is None
    assert resolve_attention("eager", "cuda", torch.bfloat16) == "eager"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    assert resolve_attention(None, "cuda", torch.bfloat16) is None  # not installed: SDPA


def test_the_lock_folder_must_be_the_users_own(tmp_path):
    """Another user's folder at the lock path (created first in a shared /tmp), a symlink, or a folder
    others may write to would let someone else hold or swap the GPU locks: refused, naming it."""
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(PermissionError, match="link: it is not a folder"):
        gpus.claim_gpu(["0"], tmp_path / "link", timeout=0)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(PermissionError, match=r"others may write to it \(mode 777\)"):
        gpus.claim_gpu(["0"], open_dir, timeout=0)
    if os.getuid() == 0:  # only root can hand a folder to another user
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(PermissionError, match="belongs to uid 65534"):
            gpus.claim_gpu(["0"], foreign, timeout=0)
    gpu, fd = gpus.claim_gpu(["0"], tmp_path / "mine", timeout=0)
    os.close(fd)
    assert gpu == "0" and (os.stat(tmp_path / "mine").st_mode & 0o777) == 0o700


def test_the_lock_folder_is_the_sessions_runtime_folder_where_there_is_one(tmp_path):
    assert gpus.default_lock_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "seqpref-gpus"
    assert gpus.default_lock_dir({"XDG_RUNTIME_DIR": str(tmp_path / "absent")}).name == f"seqpref-gpus-{os.getuid()}"
    assert gpus.default_lock_dir({"SEQPREF_GPU_LOCKS": "/x", "XDG_RUNTIME_DIR": str(tmp_path)}) == Path("/x")
