"""Warm start: run ``python -m MODULE ARG ...`` as a fork of a process that has already imported torch.

``python -m seqpref.warm -- python -m MODULE [ARG ...]`` behaves like ``python -m MODULE [ARG ...]``
(same arguments, working directory, environment, ``sys.path``, stdin/stdout/stderr, exit status, and
SIGINT/SIGTERM/SIGHUP reach it), but instead of a fresh interpreter importing torch, transformers,
PEFT and TRL again (4-5 s per job on a laptop-class core, most of a lab job), MODULE runs in a child
forked from a per-user server that imported them once. Every job is still its own Snakemake job with
its own inputs, outputs, log and benchmark; only the interpreter start is shared.

Why our own: ``multiprocessing``'s forkserver serves only the process that started it, and the job
here is a separate command that Snakemake (or a user) starts.

How it works. The client (this module, stdlib only) connects to a Unix socket; the first client of a
key starts the server (``--serve``), which imports ``PRELOAD`` and listens. The client sends its
argv, cwd, environment and ``sys.path`` and passes its fds 0-2 (``SCM_RIGHTS``); the server forks;
the child takes the fds, cwd, environment and ``sys.path``, forgets every imported ``seqpref``
module (so the checkout's current code runs, not the server's), and runs MODULE as ``__main__``.
The server reports the child's pid, then its exit status, back on the connection. If the client
dies (even by SIGKILL) the server kills the child's process group, so a killed job never runs on.

The server is keyed by the Python executable, the installed packages (site-packages' mtime), the
client's ``sys.path`` and its environment less the variables Snakemake sets per job: a changed
environment, a new checkout or a ``pip install`` gets a fresh server. It exits after ``IDLE_SECONDS``
without a job. Falls back to an ordinary ``exec`` (the cold start) whenever it cannot serve: warm
start off (``SEQPREF_WARM_START=0``; the workflow sets it from config ``warm_start``), under SLURM
(``SLURM_JOB_ID``: each job has a node of its own), a command that is not ``python -m`` with this
Python, CUDA already initialised in the server, or a server that does not come up.

What differs from a cold start: Snakemake's ``benchmark:`` files measure the client's process tree,
so their wall time (``s``) is the job's but their CPU and memory columns are the client's; run with
``warm_start: false`` to measure a job's memory. Import-time warnings were shown once, in the
server's log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import socket
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
START_TIMEOUT_SECONDS = 120.0
# set by Snakemake (shell.py) or the shell for every job: they do not key the server, the child gets them
PER_JOB_VARIABLES = frozenset({
    "OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
    "CUDA_VISIBLE_DEVICES", "PWD", "OLDPWD", "SHLVL", "_",
})
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def wanted(environ: dict | None = None) -> bool:
    """True unless ``SEQPREF_WARM_START=0`` or under SLURM (``SLURM_JOB_ID`` set)."""
    environ = os.environ if environ is None else environ
    return environ.get("SEQPREF_WARM_START", "1") != "0" and "SLURM_JOB_ID" not in environ


def python_module(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(module, args)`` when argv is ``[python, -m, module, *args]`` with this very Python, else None."""
    if len(argv) < 3 or argv[1] != "-m":
        return None
    import shutil

    found = shutil.which(argv[0])  # not resolved: a venv's python is a symlink to the base interpreter
    if found is None or os.path.abspath(found) != os.path.abspath(sys.executable):
        return None
    return argv[2], list(argv[3:])


def server_key(environ: dict | None = None, path: list[str] | None = None) -> str:
    """A hex digest naming the server this client may use (see the module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    # sys.path without the working directory `python -m` puts first: one server serves every folder
    path = list(sys.path if path is None else path)[1:]
    site = [p for p in path if p.endswith("site-packages") and os.path.isdir(p)]
    parts = {
        "python": os.path.realpath(sys.executable),
        "site": [(p, os.stat(p).st_mtime_ns) for p in site],
        "path": path,
        "env": sorted((k, v) for k, v in environ.items() if k not in PER_JOB_VARIABLES),
        "preload": PRELOAD,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def runtime_dir() -> Path:
    """Where sockets, locks and server logs live: ``SEQPREF_WARM_DIR`` or ``/tmp/seqpref-warm-<uid>``."""
    return Path(os.environ.get("SEQPREF_WARM_DIR", f"/tmp/seqpref-warm-{os.getuid()}"))


# -- wire format: a 4-byte length, then JSON ------------------------------------------------------------


def _send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(conn, [payload], fds)
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
        if len(head) < 4:
            head += _recv_exactly(conn, 4 - len(head))
    else:
        head = _recv_exactly(conn, 4)
    (n,) = struct.unpack("!I", head)
    return json.loads(_recv_exactly(conn, n)), fds


# -- client ---------------------------------------------------------------------------------------------


def _connect(sock_path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock_path))
        return conn
    except OSError:
        conn.close()
        return None


def _start_server(sock_path: Path, log_path: Path) -> socket.socket | None:
    """Start a server for ``sock_path`` (under the key's lock) and connect to it; None if it did not come up."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "seqpref.warm", "--serve", str(sock_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        conn = _connect(sock_path)
        if conn is not None:
            return conn
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def connect_or_start(key: str) -> socket.socket | None:
    """A connection to the key's server, starting one if there is none; None when none can be had."""
    run_dir = runtime_dir()
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = run_dir.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        print(f"seqpref.warm: {run_dir} is not private to this user; starting cold", file=sys.stderr, flush=True)
        return None
    sock_path = run_dir / f"{key}.sock"
    conn = _connect(sock_path)
    if conn is not None:
        return conn
    with open(run_dir / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one client starts the server; the others wait and connect
        conn = _connect(sock_path)
        if conn is not None:
            return conn
        sock_path.unlink(missing_ok=True)  # a server that died without cleaning up
        return _start_server(sock_path, run_dir / f"{key}.log")


def serve_job(module: str, args: list[str]) -> int | None:
    """Run ``python -m module *args`` in a warm child; its exit status, or None if no server would take it.

    Shell convention for a child killed by a signal: 128 + the signal number.
    """
    conn = connect_or_start(server_key())
    if conn is None:
        return None
    with conn:
        request = {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ),
                   "path": list(sys.path)}
        try:
            _send(conn, request, fds=[0, 1, 2])
            reply, _ = _recv(conn)
        except (OSError, EOFError):
            return None  # the server went away before forking (e.g. it was closing on idle): nothing ran
        if "refused" in reply:
            print(f"seqpref.warm: {reply['refused']}; starting cold", file=sys.stderr, flush=True)
            return None
        child = reply["pid"]

        def forward(signum, _frame):
            for kill in (os.killpg, os.kill):  # the group exists once the child has called setsid
                try:
                    kill(child, signum)
                    return
                except ProcessLookupError:
                    continue

        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, forward)
        while True:
            try:
                reply, _ = _recv(conn)
                return int(reply["exit"])
            except InterruptedError:
                continue
            except (OSError, EOFError):
                print("seqpref.warm: the server went away while the job ran", file=sys.stderr, flush=True)
                forward(signal.SIGKILL, None)
                return 1


def run(argv: list[str]) -> None:
    """Run argv warm when possible (``python -m MODULE ...`` with this Python), else ``exec`` it; never returns."""
    target = python_module(argv) if wanted() else None
    if target is not None:
        status = serve_job(*target)
        if status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.execvp(argv[0], argv)


# -- server ---------------------------------------------------------------------------------------------


def preload() -> None:
    """Import ``PRELOAD`` and touch ``PRELOAD_ATTRIBUTES``; a package that is not installed is skipped."""
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
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


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the server dies, so no job runs on unseen (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the server died before prctl took effect
        os._exit(1)


def _child(conn: socket.socket, request: dict, fds: list[int], close: list) -> None:
    """In the forked child: become the requested job and run it; never returns."""
    status = 1
    try:
        os.setsid()  # its own process group: the server kills the job and whatever it started at once
        _die_with_parent()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as in a fresh python
        for closable in close:
            closable.close()
        conn.close()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sys.stdout.reconfigure(line_buffering=os.isatty(1))  # as a fresh interpreter buffers them
        sys.stderr.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        for name in [m for m in sys.modules if m == "seqpref" or m.startswith("seqpref.")]:
            del sys.modules[name]  # the checkout's code as it is now, as a cold start would import it
        import importlib
        import runpy

        importlib.invalidate_caches()
        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit_:
            code = exit_.code
            if code is None:
                status = 0
            elif isinstance(code, int):
                status = code
            else:
                print(code, file=sys.stderr)
                status = 1
        except BaseException:  # noqa: BLE001 -- report as the interpreter would, then exit 1
            import traceback

            traceback.print_exc()
            status = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status & 0xFF)


def serve(sock_path: Path, idle_seconds: float = IDLE_SECONDS) -> None:
    """Preload, listen on ``sock_path`` and fork a child per request until idle for ``idle_seconds``."""
    preload()
    sys.stdout.flush()
    sys.stderr.flush()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = sock_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    listener.bind(str(tmp))
    listener.listen(64)
    os.replace(tmp, sock_path)  # clients connect only once the imports are done
    ours = os.stat(sock_path).st_ino
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    jobs: dict[int, socket.socket] = {}  # child pid -> its client's connection
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last_active = time.monotonic()
    try:
        while not stop:
            for key, _ in selector.select(timeout=0.2):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    try:
                        conn.settimeout(30)
                        request, fds = _recv(conn, with_fds=3)
                        conn.settimeout(None)
                    except (OSError, EOFError, ValueError):
                        conn.close()
                        continue
                    if _cuda_initialised():
                        _send(conn, {"refused": "CUDA is initialised in the warm server"})
                        conn.close()
                        continue
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(conn, request, fds, [listener, selector, *jobs.values()])
                    for fd in fds:
                        os.close(fd)
                    jobs[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                    _send(conn, {"pid": pid})
                else:  # a client said something or went away: either way its job must not outlive it
                    if not key.fileobj.recv(1):
                        try:
                            os.killpg(key.data, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        selector.unregister(key.fileobj)
            while jobs:
                try:
                    pid, wait_status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = jobs.pop(pid)
                code = os.waitstatus_to_exitcode(wait_status)
                try:
                    _send(conn, {"exit": code if code >= 0 else 128 - code})
                except OSError:
                    pass
                try:
                    selector.unregister(conn)
                except KeyError:  # already gone: its client went away first
                    pass
                conn.close()
            if jobs:
                last_active = time.monotonic()
            elif time.monotonic() - last_active > idle_seconds:
                break
    finally:
        try:
            if os.stat(sock_path).st_ino == ours:
                sock_path.unlink()  # new clients start a new server from here on
        except FileNotFoundError:
            pass
        listener.close()
        for pid in jobs:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv=None) -> None:
    """CLI: ``python -m seqpref.warm -- CMD [ARG ...]`` (see the module docstring); ``--serve SOCKET`` runs a server."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--serve"] and len(argv) == 2:
        serve(Path(argv[1]), float(os.environ.get("SEQPREF_WARM_IDLE", IDLE_SECONDS)))
        return
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m seqpref.warm -- CMD [ARG ...]")
    run(argv)


if __name__ == "__main__":
    main()
