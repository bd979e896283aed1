"""A one-node SLURM cluster on this machine, for the SLURM test (recipe: Debian's slurm-wlm + munge).

The daemons are started by the test and stopped by their PIDs. The cluster's state lives in a
temporary folder; its configuration is written to /etc/slurm/slurm.conf (srun inside a job reads
only that, not ``SLURM_CONF``) for the test's duration and removed after, and the test is skipped
where a slurm.conf is already there, so that no real configuration is touched. Needs root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def unavailable() -> str | None:
    """Why no cluster can be started here (None when one can)."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    if SYSTEM_CONF.exists():
        return f"{SYSTEM_CONF} exists: this machine has a SLURM configuration that the test must not replace"
    return None


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {seconds:.0f} s")


def _ok(*command: str, env=None) -> bool:
    return subprocess.run(command, capture_output=True, env=env).returncode == 0


@contextlib.contextmanager
def local_cluster(root: Path, cpus: int = 6):
    """Start munged, slurmctld and slurmd (a node of ``cpus`` CPUs) with their state under ``root``; yields the environment
    (``SLURM_CONF`` set) that SLURM's clients and Snakemake's executor plugin need; stops them after."""
    root = Path(root)
    for name in ("state", "spool", "log"):
        (root / name).mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    memory_mb = int(
        int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 1024 * 0.9
    )
    conf = SYSTEM_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "\n".join(
            [
                "ClusterName=seqpreftest",
                f"SlurmctldHost={node}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"StateSaveLocation={root}/state",
                f"SlurmdSpoolDir={root}/spool",
                f"SlurmctldPidFile={root}/slurmctld.pid",
                f"SlurmdPidFile={root}/slurmd.pid",
                f"SlurmctldLogFile={root}/log/slurmctld.log",
                f"SlurmdLogFile={root}/log/slurmd.log",
                "MailProg=/bin/true",
                "MpiDefault=none",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "SchedulerType=sched/backfill",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "JobCompType=jobcomp/none",
                "ReturnToService=2",
                "EnforcePartLimits=ALL",
                "MinJobAge=300",
                # more CPUs than the machine has (config_overrides lets slurmd believe the config): the
                # executor plugin's status checks back off by 10 s per idle poll, so the small test jobs
                # finish sooner overlapped than queued
                "SlurmdParameters=config_overrides",
                f"NodeName={node} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    processes: list[subprocess.Popen] = []
    try:
        if not _ok("munge", "-n"):
            subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "755", "/run/munge"], check=True)
            if not Path("/etc/munge/munge.key").exists():
                subprocess.run(["mungekey", "--create"], check=True)
                subprocess.run(["chown", "munge:munge", "/etc/munge/munge.key"], check=True)
            processes.append(
                subprocess.Popen(
                    ["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            _wait(lambda: _ok("munge", "-n"), 20, "munged")
        for daemon in ("slurmctld", "slurmd"):
            processes.append(
                subprocess.Popen(
                    [f"/usr/sbin/{daemon}", "-D", "-f", str(conf)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _wait(
            lambda: (
                subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
                == "idle"
            ),
            60,
            "the SLURM node",
        )
        yield env
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        conf.unlink(missing_ok=True)
