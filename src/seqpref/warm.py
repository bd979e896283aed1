"""Warm start: run ``python -m MODULE ARG ...`` as a fork of a process that has already imported torch.

``python -m seqpref.warm -- python -m MODULE [ARG ...]`` behaves like ``python -m MODULE [ARG ...]``
(same arguments, working directory, environment, umask, ``sys.path``, stdin/stdout/stderr, exit
status; signals sent to it reach MODULE), but instead of a fresh interpreter importing torch,
transformers, PEFT and TRL again (4-5 s per job on a laptop-class core, most of a lab job), MODULE
runs in a child forked from a per-user server that imported them once. Every job is still its own
Snakemake job with its own inputs, outputs, log and benchmark; only the interpreter start is shared.

Why our own: ``multiprocessing``'s forkserver serves only the process that started it, and the job
here is a separate command that Snakemake (or a user) starts.

How it works. The client (this module, stdlib only) connects to a Unix socket in a private folder
(``$XDG_RUNTIME_DIR/seqpref-warm`` where the session has one, else ``/tmp/seqpref-warm-<uid>``);
the first client of a key starts the server (``--serve``, detached: not a descendant of any job; it
says so on its stderr), which takes the key's lease (an ``flock`` the kernel drops when the server
dies, even by SIGKILL: no pid file to go stale), resets its signal state to a fresh interpreter's
(default dispositions, an empty mask: nothing of its starter's ``nohup`` or mask), imports
``PRELOAD`` and listens. Clients hold the start lock only to decide and launch; they wait for the
socket without it, for as long as the lease is held. A signal that ends a process (TERM, INT, ...)
received before the job is requested ends the client at once, as it would end a cold job still
importing; one received after is passed on once the job's pid is known. The client sends its argv, cwd,
environment, umask, ignored signals, signal mask and ``sys.path`` and passes its fds 0-2
(``SCM_RIGHTS``); the server forks; the child takes them (the signal state replaced whole, so no
earlier job or starter leaves a trace), forgets every imported ``seqpref`` module (so the checkout's current code runs, not the
server's), reseeds the random generators it inherited, and runs MODULE as ``__main__``, finishing as
the interpreter does (non-daemon threads joined, atexit handlers, objects finalised, streams
flushed). The server reports the child's pid, then its exit status, on the connection. The client
passes on INT, TERM, HUP, QUIT, USR1 (a training stage's checkpoint signal), USR2, TSTP and CONT. If
the client dies (even by SIGKILL), the server kills the child's process group; if the server dies,
its children die with it (``PR_SET_PDEATHSIG``); SIGTERM to the server is passed to every job, which
gets ``GRACE_SECONDS`` to checkpoint before it is killed.

The server is keyed by the Python executable, ``sys.path`` (less the working folder ``-m`` puts
first) and the mtime of every folder on it (site- and dist-packages, a user site, ``PYTHONPATH``: a
``pip install`` changes it), this file, the environment less the variables that do not affect an
import (working folder, temporary folder, shell bookkeeping), and what a process passes on that a job
could not take back (:func:`process_state`: nice level, resource limits, CPU affinity, cgroup): a
changed environment or thread count, another checkout, a ``pip install``, ``nice -n19 snakemake`` or
``ulimit -v`` gets a server of its own. Before each fork the server checks that it still runs a single
thread and that no file of a module it imported changed on disk (an editable install edited, a
package replaced in place); if not, it refuses, stops taking jobs (its socket removed, its lease
dropped) and the client starts a new one. It exits after ``IDLE_SECONDS`` without a job.

It falls back to an ordinary ``exec`` (the cold start) whenever it cannot serve: warm start off
(``SEQPREF_WARM_START=0``; the workflow sets it from config ``warm_start``), under SLURM
(``SLURM_JOB_ID``: each job has a node of its own), a job that may use a GPU (``CUDA_VISIBLE_DEVICES``
names one; ``seqpref.gpus`` starts every job cold on a machine with GPUs: CUDA must be initialised
after a fork, never before, and a GPU stage's imports are noise next to its hours), a command that is
not ``python -m`` with this Python, a runtime folder that is not private, or a server that does not
come up.

What differs from a cold start: Snakemake's ``benchmark:`` files measure the client's process tree, so
their wall time (``s``) is the job's but their CPU and memory columns are the client's (each warm job
says so in its log; set ``warm_start: false`` to measure a job's memory); import-time warnings were shown once, in the
server's log; ``ps`` shows the job under the server's command line (its client shows the job's).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

# what the server imports once; anything a job imports beyond this it imports itself, as usual
PRELOAD = (
    "torch",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "safetensors.torch",
    "transformers",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "matplotlib.pyplot",
)
# attributes whose first access imports the heavy submodules (transformers and TRL import lazily)
PRELOAD_ATTRIBUTES = (
    ("transformers", "AutoModelForCausalLM"),
    ("transformers", "AutoTokenizer"),
    ("transformers", "Trainer"),
    ("trl", "DPOTrainer"),
    ("trl", "DPOConfig"),
)
IDLE_SECONDS = 120.0
START_TIMEOUT_SECONDS = 180.0
GRACE_SECONDS = 30.0  # SIGTERM to the server: how long its jobs get to checkpoint before SIGKILL
# variables no preloaded import reads, which differ from job to job: they do not key the server (the
# child gets the job's own). Thread counts do key it: OpenBLAS and OpenMP read them when they load.
UNKEYED_VARIABLES = frozenset(
    {
        "TMPDIR",
        "TMP",
        "TEMP",
        "TEMPDIR",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "CUDA_VISIBLE_DEVICES",
    }
)
#: what a warm job's log says (its stderr), which :func:`ran_warm` looks for
WARM_MARK = "forked from warm server"
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
    signal.SIGTSTP,
)
_PR_SET_PDEATHSIG = 1
# signals a fresh interpreter ignores whatever it inherited (CPython's startup: a closed pipe or an
# oversized file raises an exception instead of killing the process)
PYTHON_IGNORES = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))


def settable_signals() -> list[int]:
    """Every signal whose disposition can be set (all valid signals but SIGKILL and SIGSTOP)."""
    return sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def ignored_signals() -> list[int]:
    """The signals this process ignores (``SIG_IGN``), as a child it ``exec``s would inherit them."""
    ignored = []
    for signum in settable_signals():
        try:
            if signal.getsignal(signum) == signal.SIG_IGN:
                ignored.append(signum)
        except (OSError, ValueError):  # a real-time signal CPython does not track
            continue
    return ignored


def blocked_signals() -> list[int]:
    """The calling thread's signal mask, as a child it ``exec``s would inherit it."""
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def set_signal_state(ignored: list[int], blocked: list[int]) -> None:
    """Make this process's signal state a fresh ``python``'s started with ``ignored`` and ``blocked``.

    Every settable signal goes back to ``SIG_DFL``, then ``ignored`` (and the signals CPython ignores
    at startup) to ``SIG_IGN``; SIGINT raises KeyboardInterrupt unless ignored, as CPython sets it up;
    the mask becomes exactly ``blocked``. Nothing of what the process had before survives: a server
    started from a ``nohup`` shell, or an earlier job, leaves no trace in the next job.
    """
    for signum in settable_signals():
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    for signum in {*ignored, *PYTHON_IGNORES}:
        signal.signal(signum, signal.SIG_IGN)
    if signal.SIGINT not in ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def gpu_named(environ: dict | None = None) -> bool:
    """Whether ``CUDA_VISIBLE_DEVICES`` names a device (a job pinned to a GPU)."""
    listed = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    return bool(listed) and any(g.strip() not in ("", "-1") for g in listed.split(","))


def wanted(environ: dict | None = None) -> bool:
    """False with ``SEQPREF_WARM_START=0``, under SLURM (``SLURM_JOB_ID``) or with a GPU named; else True."""
    environ = os.environ if environ is None else environ
    return environ.get("SEQPREF_WARM_START", "1") != "0" and "SLURM_JOB_ID" not in environ and not gpu_named(environ)


def python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(module, args)`` when argv is ``[python, -m, module, *args]`` with this very Python, else None."""
    if len(argv) < 3 or argv[1] != "-m":
        return None
    import shutil

    found = shutil.which(argv[0])  # not resolved: a venv's python is a symlink to the base interpreter
    if found is None or os.path.abspath(found) != os.path.abspath(sys.executable):
        return None
    return argv[2], list(argv[3:])


def ran_warm(log_path: str | os.PathLike) -> bool:
    """Whether the job whose stderr went to ``log_path`` ran warm (a Snakemake ``benchmark:`` of it then
    measured its launcher's memory and CPU, not the job's)."""
    try:
        return WARM_MARK in Path(log_path).read_text(errors="replace")
    except OSError:
        return False


def process_state() -> dict:
    """What a process passes to the programs it starts beyond its environment and that no job can take
    on for itself (lowering a nice level or raising a hard limit needs privileges): its nice level,
    resource limits (``resource.getrlimit``, soft and hard), CPU affinity and cgroup. A job forked
    from a server has the server's, so they key the server: ``nice -n19 snakemake``, ``ulimit -v`` or
    ``taskset`` get a server (and jobs) of their own."""
    import resource

    limits = {
        name: resource.getrlimit(getattr(resource, name))
        for name in sorted(dir(resource))
        if name.startswith("RLIMIT_")
    }
    try:
        cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        cgroup = None
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "rlimits": limits, "affinity": affinity, "cgroup": cgroup}


def server_key(environ: dict | None = None, path: list[str] | None = None, state: dict | None = None) -> str:
    """A hex digest naming the server this client may use (see the module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    # sys.path without the working folder `python -m` puts first: one server serves every folder
    path = list(sys.path if path is None else path)[1:]
    here = Path(__file__)
    parts = {
        "python": os.path.abspath(sys.executable),
        # every folder on the path (site-, dist-packages, a user site, PYTHONPATH): an install changes
        # its mtime; a file changed in place is caught by the server itself (_Server.stale)
        "folders": [(p, os.stat(p).st_mtime_ns) for p in path if os.path.isdir(p)],
        "warm": hashlib.sha256(here.read_bytes()).hexdigest(),
        "path": path,
        "env": sorted((k, v) for k, v in environ.items() if k not in UNKEYED_VARIABLES),
        "preload": PRELOAD,
        "process": process_state() if state is None else state,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def user_runtime_dir(name: str, override: str, environ: dict | None = None) -> Path:
    """A per-user folder for sockets and locks: ``$override`` if set, else ``$XDG_RUNTIME_DIR/<name>``
    (the session's private runtime folder, removed at logout) where set, else ``/tmp/<name>-<uid>``."""
    environ = os.environ if environ is None else environ
    if environ.get(override):
        return Path(environ[override])
    if environ.get("XDG_RUNTIME_DIR") and os.path.isdir(environ["XDG_RUNTIME_DIR"]):
        return Path(environ["XDG_RUNTIME_DIR"]) / name
    return Path(f"/tmp/{name}-{os.getuid()}")


def runtime_dir(environ: dict | None = None) -> Path:
    """Where sockets, leases, locks and server logs live (:func:`user_runtime_dir`, ``SEQPREF_WARM_DIR``)."""
    return user_runtime_dir("seqpref-warm", "SEQPREF_WARM_DIR", environ)


def private_dir(path: Path) -> bool:
    """Create ``path`` (mode 700) if needed; True when it is a real folder (no symlink) only we can enter."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


# -- wire format: a 4-byte length, then JSON ------------------------------------------------------------


def _send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [payload], fds)
        conn.sendall(payload[sent:])
    else:
        conn.sendall(payload)


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _flags, _addr = socket.recv_fds(conn, 4, with_fds)
        if not head:
            raise EOFError("connection closed")
        try:
            head += _recv_exactly(conn, 4 - len(head))
            (n,) = struct.unpack("!I", head)
            return json.loads(_recv_exactly(conn, n)), fds
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
    (n,) = struct.unpack("!I", _recv_exactly(conn, 4))
    return json.loads(_recv_exactly(conn, n)), fds


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


# -- client ---------------------------------------------------------------------------------------------


def _connect(sock_path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock_path))
    except OSError:
        conn.close()
        return None
    if _peer_uid(conn) != os.getuid():  # only a server of our own gets our environment and streams
        conn.close()
        return None
    return conn


def lease_held(lease_path: Path) -> bool:
    """Whether a server holds ``lease_path`` (its ``flock``, held from before it imports until it stops
    serving; the kernel drops it when the server dies, even by SIGKILL): a server is starting or running."""
    try:
        fd = os.open(lease_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops our shared lock, if we took it
    return False


def _cold(reason: str) -> None:
    print(f"seqpref.warm: {reason}; starting cold", file=sys.stderr, flush=True)


def _wait_for_server(sock_path: Path, lease_path: Path, deadline: float) -> socket.socket | None:
    """Connect once the leaseholder listens; None when the lease is dropped (the server exited) or at ``deadline``."""
    while time.monotonic() < deadline:
        conn = _connect(sock_path)
        if conn is not None:
            return conn
        if not lease_held(lease_path):
            return _connect(sock_path)
        time.sleep(0.02)
    return None


def connect_or_start(key: str) -> socket.socket | None:
    """A connection to the key's server, starting one if none is running or starting; None (and a line
    on stderr saying why) when none can be had.

    The start lock is held only to decide and launch, never while a server imports: waiting clients
    wait on the server's lease, so a server that dies (even by SIGKILL) is noticed at once."""
    run_dir = runtime_dir()
    if not private_dir(run_dir):
        _cold(f"{run_dir} is not a folder private to this user")
        return None
    sock_path, lease_path, log_path = (run_dir / f"{key}.{suffix}" for suffix in ("sock", "lease", "log"))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    for _attempt in range(3):  # a server that was stopping (idle, or its code changed) is replaced
        conn = _connect(sock_path)
        if conn is not None:
            return conn
        with open(run_dir / f"{key}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one client starts the server
            conn = _connect(sock_path)
            if conn is not None:
                return conn
            if not lease_held(lease_path):
                print(
                    f"seqpref.warm: starting a warm server (this job waits for its imports; later jobs fork from "
                    f"it; log {log_path})",
                    file=sys.stderr,
                    flush=True,
                )
                with open(log_path, "ab") as log:
                    started = subprocess.run(
                        [sys.executable, "-m", "seqpref.warm", "--serve", str(sock_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        close_fds=True,
                        cwd="/",
                    )
                if started.returncode != 0:
                    _cold(f"the warm server did not start (exit {started.returncode}; see {log_path})")
                    return None
        conn = _wait_for_server(sock_path, lease_path, deadline)
        if conn is not None:
            return conn
        if time.monotonic() >= deadline:
            _cold(f"no warm server listened within {START_TIMEOUT_SECONDS:.0f} s (see {log_path})")
            return None
    _cold(f"the warm server exited while starting (see {log_path})")
    return None


def signal_job(pid: int, signum: int) -> None:
    """Send ``signum`` to job ``pid``'s process group, or to ``pid`` alone before it has called setsid."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signum)
            return
        except ProcessLookupError:
            continue


class EarlySignal(Exception):
    """A signal that ends a process arrived before the job was requested: the client acts on it at once,
    as the cold job (still importing, its handlers not yet installed) would."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """Signals the client receives: acted on at once before the job is requested (:class:`EarlySignal`),
    passed to the job's process group once its pid is known, and held in between."""

    def __init__(self):
        self.child: int | None = None
        self.requested = False  # set just before the request is sent: from then on a job may exist
        self.pending: list[int] = []
        # what the job must start with: this process's state as its caller gave it (nohup's SIGHUP
        # ignored, a blocked mask), read before we install handlers of our own
        self.job_ignored = ignored_signals()
        self.job_blocked = blocked_signals()
        # a forwarded signal the client ignores stays ignored, here and in the job
        self.ignored = [s for s in FORWARDED_SIGNALS if s in self.job_ignored]
        for signum in FORWARDED_SIGNALS:
            if signum not in self.ignored:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, _frame):
        if self.child is not None:
            self.send(signum)
        elif self.requested:
            self.pending.append(signum)
        elif signum == signal.SIGTSTP:
            os.kill(os.getpid(), signal.SIGSTOP)  # stopped while waiting, as the job would be
        elif signum != signal.SIGCONT:
            raise EarlySignal(signum)

    def started(self, child: int) -> None:
        self.child = child
        for signum in self.pending:
            self.send(signum)

    def send(self, signum: int) -> None:
        """Pass ``signum`` to the job (SIGTSTP: stop the job, then this client, as a terminal would)."""
        if signum == signal.SIGTSTP:
            self.send(signal.SIGSTOP)
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        signal_job(self.child, signum)


def serve_job(module: str, args: list[str], signals: _Signals) -> int | None:
    """Run ``python -m module *args`` in a warm child; its exit status, or None if no server would take it.

    ``signals`` passes what this process receives on to the child. Shell convention for a child
    killed by a signal: 128 + the signal number.
    """
    conn = connect_or_start(server_key())
    if conn is None:
        return None
    with conn:
        mask = os.umask(0)
        os.umask(mask)
        request = {
            "module": module,
            "args": args,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "path": list(sys.path),
            "umask": mask,
            "ignored": signals.job_ignored,
            "blocked": signals.job_blocked,
        }
        signals.requested = True
        try:
            _send(conn, request, fds=[0, 1, 2])
            reply, _ = _recv(conn)
        except (OSError, EOFError, ValueError):
            _cold("the warm server went away before forking the job")  # e.g. closing on idle: nothing ran
            return None
        if not isinstance(reply.get("pid"), int):
            _cold(reply.get("refused", "the warm server started no job"))
            return None
        child = reply["pid"]
        signals.started(child)
        # the job's log says it ran warm: a Snakemake benchmark of it measured this launcher's memory
        print(
            f"seqpref.warm: job {child} {WARM_MARK} {reply.get('server')} (a benchmark of this job measures the "
            "launcher's memory and CPU, not the job's)",
            file=sys.stderr,
            flush=True,
        )
        while True:
            try:
                reply, _ = _recv(conn)
                return int(reply["exit"])
            except InterruptedError:
                continue
            except (OSError, EOFError, KeyError, ValueError):
                print("seqpref.warm: the server went away while the job ran", file=sys.stderr, flush=True)
                signals.send(signal.SIGKILL)
                return 1


def run(argv: list[str]) -> None:
    """Run argv warm when possible (``python -m MODULE ...`` with this Python), else ``exec`` it; never returns."""
    target = python_module(argv) if wanted() else None
    pending: list[int] = []
    if target is not None:
        signals = _Signals()
        try:
            status = serve_job(*target, signals)
        except EarlySignal as early:  # TERM, INT, ... while a server started: end as the cold job would
            signal.signal(early.signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [early.signum])
            os.kill(os.getpid(), early.signum)
            os._exit(128 + early.signum)  # not reached: the signal's default action ends the process
        if status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        pending = signals.pending
        for signum in FORWARDED_SIGNALS:  # the exec'd command starts with the dispositions we were given
            if signum not in signals.ignored:
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    for signum in pending:  # received while no job ran: it acts now, as it would have on the job
        os.kill(os.getpid(), signum)
    os.execvp(argv[0], argv)


# -- server ---------------------------------------------------------------------------------------------


def preload() -> None:
    """Import ``PRELOAD`` and touch ``PRELOAD_ATTRIBUTES``; a package that is not installed is skipped.

    CUDA stays hidden while importing (a process that initialised CUDA cannot fork a working child).
    """
    import importlib

    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "PYTORCH_NVML_BASED_CUDA_CHECK")}
    os.environ.update(CUDA_VISIBLE_DEVICES="", PYTORCH_NVML_BASED_CUDA_CHECK="1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError as err:
                print(f"seqpref.warm: not preloading {name}: {err}", file=sys.stderr, flush=True)
        for name, attribute in PRELOAD_ATTRIBUTES:
            try:
                getattr(importlib.import_module(name), attribute)
            except (ImportError, AttributeError) as err:
                print(f"seqpref.warm: not preloading {name}.{attribute}: {err}", file=sys.stderr, flush=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _die_with(server: int) -> None:
    """Linux: SIGKILL this process when the server dies, so no job runs on unseen (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != server:  # the server died before prctl took effect
        os._exit(1)


def _become_job(request: dict, fds: list[int], server: int) -> None:
    """In the forked child: take on the client's process state (streams, folder, environment, ...)."""
    os.setsid()  # its own process group: the server kills the job and whatever it started at once
    _die_with(server)
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # as a fresh interpreter buffers them
    sys.stderr.reconfigure(line_buffering=True)
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import tempfile

    tempfile.tempdir = None  # read TMPDIR again, the job's
    sys.path[:] = request["path"]
    for name in [m for m in sys.modules if m == "seqpref" or m.startswith("seqpref.")]:
        del sys.modules[name]  # the checkout's code as it is now, as a cold start would import it
    import importlib

    importlib.invalidate_caches()
    # generators seeded when the server imported them would give every job the same draws
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "datasets.fingerprint" in sys.modules:
        sys.modules["datasets.fingerprint"].fingerprint_rng.seed()  # random cache fingerprints


def _run_as_main(module: str, args: list[str]) -> int:
    """Run ``module`` as ``__main__`` with ``args`` and finish as the interpreter would; the exit status."""
    import gc
    import runpy
    import threading

    sys.argv = [module, *args]
    status, interrupted, namespace = 0, False, None
    try:
        namespace = runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            status = code or 0
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException:  # noqa: BLE001 -- reported as the interpreter reports it
        kind, value, tb = sys.exc_info()
        interrupted = kind is KeyboardInterrupt
        sys.excepthook(kind, value, tb)
        status = 1
        del kind, value, tb
    # what Py_Finalize does, in its order: join non-daemon threads, atexit, finalise objects, flush
    getattr(threading, "_shutdown", lambda: None)()
    import atexit

    atexit._run_exitfuncs()
    if namespace is not None:
        namespace.clear()
    gc.collect()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 120
    if interrupted:  # die by SIGINT, as Python does after an unhandled KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def _child(request: dict, fds: list[int], server: int, close: list) -> None:
    """In the forked child: become the requested job and run it; never returns."""
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (*FORWARDED_SIGNALS, signal.SIGCHLD):  # the server's handlers: not the job's
            signal.signal(signum, signal.SIG_DFL)
        for closable in close:
            if isinstance(closable, int):
                os.close(closable)
            else:
                closable.close()
        _become_job(request, fds, server)
        # last, so that no signal the launcher blocks or ignores is lost or acted on while setting up
        set_signal_state(request["ignored"], request.get("blocked", []))
        status = _run_as_main(request["module"], request["args"])
    except BaseException:  # noqa: BLE001 -- the job could not be set up: say why on its stderr
        import traceback

        traceback.print_exc()
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    os._exit(status & 0xFF)


def native_threads() -> dict[int, str]:
    """``thread id -> name`` of every thread of this process as the kernel lists them (``/proc/self/task``;
    empty where there is none)."""
    threads = {}
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                threads[int(tid)] = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            except OSError:
                continue
    except OSError:
        pass
    return threads


def fork_hazard(preloaded: dict[int, str]) -> str | None:
    """Why forking now could hand the job a lock held by a thread the fork does not copy, or None.

    A fork copies only the calling thread. Any Python thread may hold a Python-level lock (logging,
    the import lock), so there must be none but this one. Native threads are allowed only if the
    imports started them (``preloaded``, from :func:`native_threads` once the imports were done): those
    are numpy's and scipy's OpenBLAS servers and pyarrow's jemalloc background thread, pools that
    quiesce at a fork through their ``pthread_atfork`` handlers; a thread started after the imports is not.
    """
    import threading

    if threading.active_count() != 1:
        return f"the warm server runs {threading.active_count()} Python threads (a fork copies only one)"
    started = sorted(set(native_threads()) - set(preloaded))
    if started:
        return f"the warm server started {len(started)} thread(s) since its imports (a fork copies only one)"
    return None


def module_files() -> dict[str, tuple[int, int]]:
    """``path -> (mtime_ns, size)`` of every imported module's file but seqpref's (which each job
    imports afresh): what a job forked now would run without reading it again."""
    files = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "seqpref" or name.startswith("seqpref."):
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue
        files[path] = (info.st_mtime_ns, info.st_size)
    return files


class _Server:
    """The listening socket, one connection per running job, and the jobs' process groups."""

    def __init__(self, listener: socket.socket, sock_path: Path | None = None, lease: int | None = None):
        self.listener = listener
        self.sock_path = sock_path
        self.sock_inode = os.stat(sock_path).st_ino if sock_path is not None else None
        self.lease = lease  # the lease's fd (held while this server takes jobs), or None
        self.imported = module_files()  # what the preloaded code is, to tell when it changed on disk
        self.preloaded_threads = native_threads()
        print(
            f"seqpref.warm: serving; threads after the imports: {sorted(self.preloaded_threads.values())}",
            file=sys.stderr,
            flush=True,
        )
        self.draining = False  # no new jobs: ends once the running ones have
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.wake_r, self.wake_w = os.pipe()  # SIGCHLD / SIGTERM write here: the loop wakes at once
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.stopping_since: float | None = None
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, *_):
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            self._kill_all(signal.SIGTERM)  # a training stage saves a checkpoint on SIGTERM

    def _kill_all(self, signum: int) -> None:
        for pid in self.jobs:
            signal_job(pid, signum)

    def stale(self) -> str | None:
        """The first preloaded module file changed on disk since the imports (an edited editable install,
        a package upgraded in place), or None."""
        for path, recorded in self.imported.items():
            try:
                info = os.stat(path)
            except OSError:
                return path
            if (info.st_mtime_ns, info.st_size) != recorded:
                return path
        return None

    def unlink_socket(self) -> None:
        """Remove the socket file if it is still this server's (new clients then start a new server)."""
        try:
            if self.sock_path is not None and os.stat(self.sock_path).st_ino == self.sock_inode:
                self.sock_path.unlink()
        except FileNotFoundError:
            pass

    def refusal(self) -> str | None:
        """Why this server must not fork a job now (and so stops taking them), or None."""
        if _cuda_initialised():
            return "CUDA is initialised in the warm server"
        if self.stopping_since is not None:
            return "the warm server is stopping"
        hazard = fork_hazard(self.preloaded_threads)
        if hazard:
            return hazard
        changed = self.stale()
        if changed:
            return f"the warm server's preloaded code changed on disk ({changed})"
        return None

    def drain(self) -> None:
        """Take no more jobs: stop listening, remove the socket and drop the lease, so that the next
        client starts a new server while this one's running jobs finish."""
        if self.draining:
            return
        self.draining = True
        try:
            self.selector.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.unlink_socket()
        self.listener.close()
        if self.lease is not None:
            os.close(self.lease)
            self.lease = None

    def _drop(self, conn: socket.socket) -> None:
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def accept(self) -> None:
        """Take one request and fork its job; a client that fails or vanishes costs only its own job."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        fds: list[int] = []
        try:
            conn.settimeout(5)
            if _peer_uid(conn) != os.getuid():
                raise PermissionError("a client of another user")
            request, fds = _recv(conn, with_fds=3)
            conn.settimeout(None)
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors, got {len(fds)}")
            refusal = self.refusal()
            if refusal is not None:
                self.drain()  # unlinks the socket and drops the lease before the client hears of it
                _send(conn, {"refused": refusal})
                raise ConnectionAbortedError
            sys.stdout.flush()
            sys.stderr.flush()
            server = os.getpid()
            try:
                pid = os.fork()
            except OSError as err:
                _send(conn, {"refused": f"fork failed: {err}"})
                raise ConnectionAbortedError from err
            if pid == 0:
                _child(
                    request,
                    fds,
                    server,
                    [
                        self.listener,
                        self.selector,
                        self.wake_r,
                        self.wake_w,
                        *([self.lease] if self.lease is not None else []),
                        conn,
                        *self.jobs.values(),
                    ],
                )
        except (OSError, EOFError, ValueError, KeyError, TypeError, ConnectionAbortedError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        for fd in fds:
            os.close(fd)
        self.jobs[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        try:
            _send(conn, {"pid": pid, "server": os.getpid()})
        except OSError:  # the client is already gone: its job must not run on
            signal_job(pid, signal.SIGKILL)
            self._drop(conn)

    def client_event(self, conn: socket.socket, pid: int) -> None:
        """A client said something or went away; gone (EOF or reset) means its job is killed."""
        try:
            gone = not conn.recv(1)
        except OSError:
            gone = True
        if gone:
            signal_job(pid, signal.SIGKILL)
            self._drop(conn)

    def reap(self) -> None:
        """Collect finished children and send each one's exit status to its client."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.jobs.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            try:
                _send(conn, {"exit": code if code >= 0 else 128 - code})
            except OSError:
                pass
            self._drop(conn)

    def loop(self, idle_seconds: float) -> None:
        """Serve until idle for ``idle_seconds``, or until every job has ended after SIGTERM."""
        last_active = time.monotonic()
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "listener":
                    self.accept()
                elif key.data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self.client_event(key.fileobj, key.data)
            self.reap()
            now = time.monotonic()
            if self.jobs:
                last_active = now
            if self.stopping_since is not None:
                if not self.jobs:
                    return
                if now - self.stopping_since > GRACE_SECONDS:
                    self._kill_all(signal.SIGKILL)
            elif not self.jobs and (self.draining or now - last_active > idle_seconds):
                return


def serve(sock_path: Path, idle_seconds: float = IDLE_SECONDS, lease: int | None = None) -> None:
    """Preload, listen on ``sock_path`` and fork a child per request until idle for ``idle_seconds``;
    ``lease`` is the fd of the held lease (:func:`take_lease`), dropped when the server stops taking jobs."""
    os.chdir("/")  # hold no job's folder (and read no job's matplotlibrc)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path.pop(0)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = sock_path.with_name(f"{sock_path.stem}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    listener.bind(str(tmp))  # fails here, before the imports, if the path cannot be a socket
    try:
        preload()
        import gc

        gc.collect()
        gc.freeze()  # the preloaded objects stay out of the jobs' collections: their pages stay shared
        sys.stdout.flush()
        sys.stderr.flush()
        listener.listen(64)
        os.replace(tmp, sock_path)  # clients connect only once the imports are done
        server = _Server(listener, sock_path, lease)
        try:
            server.loop(idle_seconds)
        finally:
            server.unlink_socket()
            listener.close()
            server._kill_all(signal.SIGKILL)
    finally:
        tmp.unlink(missing_ok=True)


def take_lease(lease_path: Path, wait: float = 2.0) -> int | None:
    """Open ``lease_path`` and take its exclusive ``flock`` (retrying for ``wait`` s past clients' brief
    checks); the fd, or None when another server holds it. The pid is written in it for people."""
    fd = os.open(lease_path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.01)


def _detach(lease: int) -> None:
    """Fork; the parent exits once the child holds the lease (inherited), so the server is no job's
    descendant (nor in its benchmark) and its starter, once this returns, sees a server starting."""
    child = os.fork()
    if child > 0:
        os._exit(0)
    os.setsid()
    os.ftruncate(lease, 0)
    os.pwrite(lease, str(os.getpid()).encode(), 0)


def main(argv=None) -> None:
    """CLI: ``python -m seqpref.warm -- CMD [ARG ...]`` (see the module docstring); ``--serve SOCKET`` starts a
    server; ``--key`` prints where the server this process would use lives (its files, less the suffix)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"] and len(argv) == 2:
        # a clean start, whatever the client that started us had ignored or blocked: each job gets
        # its own launcher's state in _child; the server itself must see SIGCHLD and SIGTERM
        set_signal_state(ignored=[], blocked=[])
        lease = take_lease(Path(argv[1]).with_suffix(".lease"))
        if lease is None:  # another server holds it (started by a client that did not see it yet)
            return
        _detach(lease)
        serve(Path(argv[1]), float(os.environ.get("SEQPREF_WARM_IDLE", IDLE_SECONDS)), lease)
        return
    if argv == ["--key"]:  # where this process's server would be: its socket, lease, lock and log, less the suffix
        print(runtime_dir() / server_key())
        return
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m seqpref.warm -- CMD [ARG ...]")
    run(argv)


if __name__ == "__main__":
    main()
