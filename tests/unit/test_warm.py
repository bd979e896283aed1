"""seqpref.warm: a warm job behaves as the cold ``python -m`` it stands for, and dies with its launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from seqpref import warm

SRC = str(Path(__file__).resolve().parents[2] / "src")

# the job: reports how it was started, then does what its arguments say
JOB = textwrap.dedent("""
    import json, os, signal, sys, time
    started_warm = "torch" in sys.modules  # a fresh interpreter has not imported torch yet
    print(json.dumps({"warm": started_warm, "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "marker": os.environ.get("WARM_TEST_MARKER"), "threads": os.environ.get("OMP_NUM_THREADS"),
                      "seqpref_loaded": "seqpref" in sys.modules, "version": VERSION, "ppid": os.getppid()}))
    sys.stdout.flush()
    print("to stderr", file=sys.stderr)
    action = sys.argv[1]
    if action == "signals":  # the kernel's view of the job's signal state, and Python's
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        print(json.dumps({"ignored": int(status["SigIgn"], 16), "blocked": int(status["SigBlk"], 16),
                          "hup": str(signal.getsignal(signal.SIGHUP)), "int": str(signal.getsignal(signal.SIGINT))}))
        sys.exit(0)
    if action == "finish":  # a non-daemon thread and an unclosed file: the interpreter waits and flushes
        import threading
        unclosed = open(sys.argv[2], "w")
        unclosed.write("flushed at exit")
        threading.Thread(target=lambda: (time.sleep(0.5), open(sys.argv[3], "w").write("joined"))).start()
        sys.exit(0)
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "exit":
        sys.exit(int(sys.argv[2]))
    if action == "raise":
        raise ValueError("raised by the job")
    if action == "process":  # what a process inherits that it cannot take back for itself
        import resource
        print(json.dumps({"nice": os.getpriority(os.PRIO_PROCESS, 0),
                          "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
                          "affinity": sorted(os.sched_getaffinity(0))}))
        sys.exit(0)
    if action == "sleep":
        def on_term(signum, frame):
            open(sys.argv[3], "w").write(signal.Signals(signum).name)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGUSR1, on_term)
        open(sys.argv[2], "w").write(str(os.getpid()))
        time.sleep(60)
""")


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    """A folder holding the job module ``warmjob`` and a private server folder; servers stopped after."""
    root = tmp_path_factory.mktemp("warm")
    (root / "mods").mkdir()
    (root / "mods" / "warmjob.py").write_text("VERSION = 1\n" + JOB)
    yield root
    subprocess.run(["pkill", "-f", str(root / "servers")], check=False)  # every server of these tests


def env_for(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQPREF_", "SLURM_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(root / "mods"), SRC]),
        SEQPREF_WARM_DIR=str(root / "servers"),
        SEQPREF_WARM_IDLE="60",
        WARM_TEST_MARKER="m1",
        OMP_NUM_THREADS="1",
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
    )
    env.update(extra)
    return env


def launch(root: Path, *args, env=None, **popen):
    """Start ``python -m seqpref.warm -- python -m warmjob ARGS`` (python as the workflow's PATH names it)."""
    cmd = ["python", "-m", "seqpref.warm", "--", "python", "-m", "warmjob", *args]
    return subprocess.Popen(
        cmd, cwd=root, env=env or env_for(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def report(out: str) -> dict:
    return json.loads(out.splitlines()[0])


def test_a_warm_job_gets_argv_cwd_environment_streams_and_status(job_dir):
    proc = launch(job_dir, "exit", "3", env=env_for(job_dir, OMP_NUM_THREADS="2"))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 3, err
    first = report(out)
    # twice: the first may have started the server; the second certainly runs in it
    proc = launch(job_dir, "exit", "0", env=env_for(job_dir, WARM_TEST_MARKER="m2"))
    out, err = proc.communicate(timeout=180)
    seen = report(out)
    assert proc.returncode == 0
    assert seen["warm"] and first["warm"], "the job did not run in a warm server"
    assert seen["ppid"] != proc.pid  # forked by the server, not started by the launcher
    assert seen["argv"] == ["exit", "0"] and seen["cwd"] == str(job_dir)
    assert seen["marker"] == "m2" and first["threads"] == "2" and seen["threads"] == "1"
    assert not seen["seqpref_loaded"], "the server's seqpref modules leaked into the job"
    assert "to stderr" in err


def test_an_exception_exits_1_with_its_traceback(job_dir):
    proc = launch(job_dir, "raise")
    out, err = proc.communicate(timeout=180)
    assert report(out)["warm"]
    assert proc.returncode == 1
    assert "Traceback" in err and "ValueError: raised by the job" in err


def test_the_jobs_code_is_read_fresh_each_time(job_dir):
    module = job_dir / "mods" / "warmjob.py"
    module.write_text("VERSION = 2\n" + JOB)
    try:
        proc = launch(job_dir, "exit", "0")
        out, _ = proc.communicate(timeout=180)
        assert report(out)["warm"] and report(out)["version"] == 2
    finally:
        module.write_text("VERSION = 1\n" + JOB)


def wait_for(path: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise TimeoutError(path)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: neither gone nor a zombie waiting to be reaped. Race-free: the process may
    end at any point here, and an entry of /proc that vanishes means it has."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_sigterm_reaches_the_job_and_its_status_comes_back(job_dir, tmp_path):
    pid_file, term_file = tmp_path / "pid", tmp_path / "term"
    proc = launch(job_dir, "sleep", str(pid_file), str(term_file))
    job = int(wait_for(pid_file))
    assert job != proc.pid
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert term_file.read_text() == "SIGTERM"


def test_killing_the_launcher_kills_the_job(job_dir, tmp_path):
    pid_file = tmp_path / "pid"
    proc = launch(job_dir, "sleep", str(pid_file), str(tmp_path / "term"))
    job = int(wait_for(pid_file))
    assert alive(job)
    proc.kill()  # SIGKILL: the launcher cannot pass it on; the server must notice it is gone
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while alive(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(job), "the job outlived its killed launcher"
    assert not (tmp_path / "term").exists()


@pytest.mark.parametrize("switch", [{"SEQPREF_WARM_START": "0"}, {"SLURM_JOB_ID": "42"}])
def test_off_or_under_slurm_the_job_starts_cold(job_dir, switch):
    proc = launch(job_dir, "exit", "4", env=env_for(job_dir, **switch))
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 4
    assert not report(out)["warm"]


def test_a_command_that_is_not_python_m_is_executed_as_is(job_dir):
    out = subprocess.run(
        ["python", "-m", "seqpref.warm", "--", "sh", "-c", "echo $WARM_TEST_MARKER; exit 5"],
        env=env_for(job_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 5 and out.stdout.strip() == "m1"


def test_the_server_key_ignores_only_what_no_import_reads():
    env = {"PATH": "/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TMPDIR": "/tmp/a"}
    same = {**env, "TMPDIR": "/tmp/b", "PWD": "/elsewhere"}
    path = ["/workdir", "/x", "/y"]
    assert warm.server_key(env, path) == warm.server_key(same, path)
    # OpenBLAS / OpenMP size their thread pools from it when they load, in the server
    assert warm.server_key(env, path) != warm.server_key({**env, "OMP_NUM_THREADS": "4"}, path)
    assert warm.server_key(env, path) == warm.server_key(env, ["/another/workdir", "/x", "/y"])
    assert warm.server_key(env, path) != warm.server_key({**env, "HF_HUB_OFFLINE": "0"}, path)
    assert warm.server_key(env, path) != warm.server_key(env, ["/workdir", "/other/checkout/src", "/y"])


def test_a_killed_server_takes_its_jobs_with_it(job_dir, tmp_path):
    pid_file = tmp_path / "pid"
    proc = launch(job_dir, "sleep", str(pid_file), str(tmp_path / "term"))
    job = int(wait_for(pid_file))
    server = int(Path(f"/proc/{job}/stat").read_text().split(")")[-1].split()[1])
    os.kill(server, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "server went away" in err
    deadline = time.monotonic() + 10
    while alive(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(job), "the job outlived its server"


def test_a_server_folder_others_can_enter_is_not_used(job_dir, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    proc = launch(job_dir, "exit", "0", env=env_for(job_dir, SEQPREF_WARM_DIR=str(shared)))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and not report(out)["warm"]
    assert "not a folder private to this user" in err
    link = tmp_path / "link"
    link.symlink_to(job_dir / "servers")  # a private folder of ours, reached through a link someone could swap
    proc = launch(job_dir, "exit", "0", env=env_for(job_dir, SEQPREF_WARM_DIR=str(link)))
    out, err = proc.communicate(timeout=180)
    assert not report(out)["warm"] and "not a folder private to this user" in err


def test_sigusr1_the_checkpoint_signal_reaches_the_job(job_dir, tmp_path):
    pid_file, term_file = tmp_path / "pid", tmp_path / "term"
    proc = launch(job_dir, "sleep", str(pid_file), str(term_file))
    wait_for(pid_file)
    proc.send_signal(signal.SIGUSR1)
    proc.communicate(timeout=30)
    assert term_file.read_text() == "SIGUSR1" and proc.returncode == 143


def launcher_state(ignored=(), blocked=()):
    """A ``preexec_fn`` giving the launcher exactly this signal state, whatever pytest itself was
    started with (a suite run under ``nohup`` ignores SIGHUP, and its children inherit that)."""

    def set_state():
        warm.set_signal_state(list(ignored), list(blocked))

    return set_state


def job_signals(root: Path, state, env=None) -> dict:
    """The signal state a ``signals`` job reports, started from a launcher with ``state``."""
    proc = launch(root, "signals", env=env, preexec_fn=state)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    return {**json.loads(out.splitlines()[1]), "warm": report(out)["warm"]}


def cold_signals(root: Path, state) -> dict:
    """What a cold ``python -m`` started from a launcher with ``state`` gets: the reference."""
    return job_signals(root, state, env=env_for(root, SEQPREF_WARM_START="0"))


NOHUP_AND_USR1_BLOCKED = launcher_state(ignored=[signal.SIGHUP], blocked=[signal.SIGUSR1])
CLEAN = launcher_state()


def test_a_job_gets_exactly_its_launchers_signal_state_whatever_started_the_server(job_dir, tmp_path):
    # a server of its own, started by a launcher that ignores SIGHUP and blocks SIGUSR1
    env = env_for(job_dir, SEQPREF_WARM_DIR=str(tmp_path / "servers"))
    try:
        first = job_signals(job_dir, NOHUP_AND_USR1_BLOCKED, env=env)
        assert first["warm"]
        assert {k: first[k] for k in ("ignored", "blocked", "hup")} == {
            k: cold_signals(job_dir, NOHUP_AND_USR1_BLOCKED)[k] for k in ("ignored", "blocked", "hup")
        }
        assert first["ignored"] & (1 << (signal.SIGHUP - 1)) and first["blocked"] == 1 << (signal.SIGUSR1 - 1)
        second = job_signals(job_dir, CLEAN, env=env)
        clean = cold_signals(job_dir, CLEAN)
        assert second["warm"]
        assert (second["ignored"], second["blocked"], second["hup"], second["int"]) == (
            clean["ignored"],
            clean["blocked"],
            clean["hup"],
            clean["int"],
        )
        assert not second["ignored"] & (1 << (signal.SIGHUP - 1)) and second["blocked"] == 0
    finally:
        subprocess.run(["pkill", "-f", str(tmp_path / "servers")], check=False)


@pytest.mark.parametrize("before", ["ignoring", "killed launcher", "failed"])
def test_a_job_after_another_sees_its_own_launchers_defaults(job_dir, tmp_path, before):
    clean = cold_signals(job_dir, CLEAN)
    if before == "ignoring":
        assert job_signals(job_dir, NOHUP_AND_USR1_BLOCKED)["warm"]
    elif before == "killed launcher":
        pid_file = tmp_path / "pid"
        proc = launch(job_dir, "sleep", str(pid_file), str(tmp_path / "term"), preexec_fn=NOHUP_AND_USR1_BLOCKED)
        job = int(wait_for(pid_file))
        proc.kill()
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while alive(job) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        proc = launch(job_dir, "raise", preexec_fn=NOHUP_AND_USR1_BLOCKED)
        proc.communicate(timeout=180)
        assert proc.returncode == 1
    after = job_signals(job_dir, CLEAN)
    assert after["warm"]
    assert (after["ignored"], after["blocked"], after["hup"], after["int"]) == (
        clean["ignored"],
        clean["blocked"],
        clean["hup"],
        clean["int"],
    )


def test_the_signal_state_helpers_round_trip():
    """``set_signal_state`` then ``ignored_signals`` / ``blocked_signals`` read back what was set."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import signal
        from seqpref import warm
        warm.set_signal_state([signal.SIGHUP, signal.SIGUSR2], [signal.SIGUSR1])
        print(sorted(warm.ignored_signals()), warm.blocked_signals())
        warm.set_signal_state([], [])
        print(sorted(warm.ignored_signals()), warm.blocked_signals(), signal.getsignal(signal.SIGINT).__name__)
    """),
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    python_ignores = sorted(int(s) for s in warm.PYTHON_IGNORES)
    assert first == f"{sorted([int(signal.SIGHUP), int(signal.SIGUSR2), *python_ignores])} [{int(signal.SIGUSR1)}]"
    assert second == f"{python_ignores} [] default_int_handler"


def test_the_job_finishes_as_the_interpreter_would(job_dir, tmp_path):
    unclosed, joined = tmp_path / "unclosed", tmp_path / "joined"
    proc = launch(job_dir, "finish", str(unclosed), str(joined))
    out, err = proc.communicate(timeout=180)
    assert report(out)["warm"] and proc.returncode == 0, err
    assert joined.read_text() == "joined", "a non-daemon thread was cut off"
    assert unclosed.read_text() == "flushed at exit", "an unclosed file lost its buffer"
    proc = launch(job_dir, "interrupt")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT and "KeyboardInterrupt" in err


def test_a_job_with_a_gpu_named_starts_cold(job_dir):
    proc = launch(job_dir, "exit", "0", env=env_for(job_dir, CUDA_VISIBLE_DEVICES="0"))
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0 and not report(out)["warm"]
    assert not warm.wanted({"CUDA_VISIBLE_DEVICES": "1"}) and warm.wanted({"CUDA_VISIBLE_DEVICES": ""})


def test_neither_server_nor_job_is_a_descendant_of_the_launcher(job_dir, tmp_path):
    """Snakemake's benchmark measures the launcher's process tree: the server's imports are not in it."""
    import psutil

    pid_file = tmp_path / "pid"
    proc = launch(job_dir, "sleep", str(pid_file), str(tmp_path / "term"))
    job = int(wait_for(pid_file))
    tree = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    server = psutil.Process(job).ppid()
    assert job not in tree and server not in tree
    assert "--serve" in psutil.Process(server).cmdline()
    assert psutil.Process(server).cwd() == "/", "the server holds a job's folder"
    proc.kill()
    proc.communicate(timeout=30)


def test_sigterm_to_the_server_lets_its_jobs_checkpoint(job_dir, tmp_path):
    pid_file, term_file = tmp_path / "pid", tmp_path / "term"
    proc = launch(job_dir, "sleep", str(pid_file), str(term_file))
    job = int(wait_for(pid_file))
    server = int(Path(f"/proc/{job}/stat").read_text().split(")")[-1].split()[1])
    os.kill(server, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert term_file.read_text() == "SIGTERM" and proc.returncode == 143


@pytest.mark.parametrize(
    "gpu_env, warm_expected",
    [
        ({"CUDA_VISIBLE_DEVICES": ""}, True),  # no GPU: warm
        ({"CUDA_VISIBLE_DEVICES": "0"}, False),  # a GPU, pinned by seqpref.gpus: a fresh process
        ({"CUDA_VISIBLE_DEVICES": "0", "SEQPREF_GPU_PINNING": "0"}, False),  # a GPU, unpinned: still fresh
    ],
)
def test_gpu_steps_start_warm_only_without_gpus(job_dir, tmp_path, gpu_env, warm_expected):
    env = env_for(job_dir, SEQPREF_GPU_LOCKS=str(tmp_path / "locks"), **gpu_env)
    out = subprocess.run(
        ["python", "-m", "seqpref.gpus", "--", "python", "-m", "warmjob", "exit", "0"],
        cwd=job_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert report(out.stdout)["warm"] is warm_expected


def test_an_idle_server_is_not_a_live_run_of_the_folder_that_started_it(tmp_path):
    """`make resume` refuses to unlock a folder while a step runs there: the server is not one."""
    from seqpref import resume

    root = tmp_path / "fresh"
    (root / "mods").mkdir(parents=True)
    (root / "mods" / "warmjob.py").write_text("VERSION = 1\n" + JOB)
    env = env_for(root, SEQPREF_WARM_DIR=str(tmp_path / "own_servers"))  # a server started from `root`
    try:
        proc = launch(root, "exit", "0", env=env)
        out, _ = proc.communicate(timeout=180)
        assert report(out)["warm"]
        assert resume.live_runs(root.resolve()) == []
    finally:
        subprocess.run(["pkill", "-f", str(tmp_path / "own_servers")], check=False)


def test_a_client_gone_before_its_pid_arrives_costs_no_other_job(job_dir, tmp_path):
    """A launcher killed between sending its request and reading the pid must not bring the server down."""
    import socket

    pid_file = tmp_path / "pid"
    proc = launch(job_dir, "sleep", str(pid_file), str(tmp_path / "term"))
    job = int(wait_for(pid_file))
    env = env_for(job_dir)
    # the running job's server: a folder may also hold the socket a SIGKILLed server left behind
    server = int(Path(f"/proc/{job}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    sock = next(p.with_suffix(".sock") for p in (job_dir / "servers").glob("*.lease") if p.read_text() == str(server))
    for _ in range(3):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(sock))
        request = {
            "module": "warmjob",
            "args": ["exit", "0"],
            "cwd": str(job_dir),
            "env": env,
            "path": [str(job_dir / "mods"), SRC, *sys.path[1:]],
            "umask": 0o22,
            "ignored": [],
        }
        with open(os.devnull, "w") as null:
            warm._send(conn, request, fds=[null.fileno()] * 3)
        conn.close()  # gone without reading the reply
    time.sleep(1.0)
    assert alive(job), "another client's job was killed"
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


def server_path(root: Path, env: dict, preexec_fn=None) -> Path:
    """The server files a launcher with ``env`` (started in ``root``) would use, less the suffix."""
    out = subprocess.run(
        ["python", "-m", "seqpref.warm", "--key"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec_fn,
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


def test_a_client_waits_on_the_lease_without_the_start_lock_and_a_signal_ends_it(job_dir, tmp_path):
    """While a server starts (its lease held, no socket yet), a client waits without holding the start
    lock (another client can decide at once), and SIGTERM ends it at once, as it would a cold job still
    importing, instead of waiting for the server to come up."""
    import fcntl

    env = env_for(job_dir, SEQPREF_WARM_DIR=str(tmp_path / "servers"))
    (tmp_path / "servers").mkdir(mode=0o700)
    key = server_path(job_dir, env)
    with open(key.with_suffix(".lease"), "w") as lease:
        fcntl.flock(lease, fcntl.LOCK_EX)  # a server that is importing
        proc = launch(job_dir, "exit", "0", env=env)
        deadline = time.monotonic() + 30
        while not key.with_suffix(".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with open(key.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if the client held it
        assert proc.poll() is None, "the client did not wait for the starting server"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGTERM and time.monotonic() - started < 5


def test_a_sigkilled_server_is_replaced_at_once_and_the_start_is_announced(job_dir, tmp_path):
    """The lease dies with its server: the next job starts a new one without waiting, and says so."""
    env = env_for(job_dir, SEQPREF_WARM_DIR=str(tmp_path / "servers"))
    try:
        proc = launch(job_dir, "exit", "0", env=env)
        out, err = proc.communicate(timeout=180)
        assert report(out)["warm"] and "starting a warm server" in err
        server = int(server_path(job_dir, env).with_suffix(".lease").read_text())
        os.kill(server, signal.SIGKILL)
        while alive(server):
            time.sleep(0.05)
        assert server_path(job_dir, env).with_suffix(".sock").exists()  # left behind by the killed server
        proc = launch(job_dir, "exit", "0", env=env)
        out, err = proc.communicate(timeout=180)
        assert report(out)["warm"] and "starting a warm server" in err, err
        assert int(server_path(job_dir, env).with_suffix(".lease").read_text()) != server
        proc = launch(job_dir, "exit", "0", env=env)
        out, err = proc.communicate(timeout=180)
        assert report(out)["warm"] and "starting a warm server" not in err and "forked from warm server" in err
    finally:
        subprocess.run(["pkill", "-f", str(tmp_path / "servers")], check=False)


def test_a_job_gets_its_launchers_nice_level_limits_and_affinity(job_dir):
    """``nice``, ``ulimit`` and ``taskset`` on the launcher apply to the warm job as to a cold one."""
    import resource

    def constrained():
        os.nice(3)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    def job_process(env):
        proc = launch(job_dir, "process", env=env, preexec_fn=constrained)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        return report(out)["warm"], json.loads(out.splitlines()[1])

    cold_warm, cold = job_process(env_for(job_dir, SEQPREF_WARM_START="0"))
    was_warm, seen = job_process(env_for(job_dir))
    assert was_warm and not cold_warm
    assert seen == cold and seen["nice"] == os.getpriority(os.PRIO_PROCESS, 0) + 3 and seen["nofile"][0] == 256
    assert server_path(job_dir, env_for(job_dir), constrained) != server_path(job_dir, env_for(job_dir))


def test_the_server_key_covers_every_package_folder(tmp_path):
    """An install into any folder on the path (dist-packages, a user site, PYTHONPATH) changes the key."""
    dist = tmp_path / "dist-packages"
    dist.mkdir()
    env = {"PATH": "/bin"}
    key = warm.server_key(env, ["/workdir", str(dist)])
    (dist / "newpkg").mkdir()
    os.utime(dist, ns=(0, os.stat(dist).st_mtime_ns + 10**9))
    assert warm.server_key(env, ["/workdir", str(dist)]) != key


#: a server whose preload is one small module (no torch): started with serve(), not detached
SMALL_SERVER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from seqpref import warm
    warm.PRELOAD, warm.PRELOAD_ATTRIBUTES = ("warmdep",), ()
    sock = Path(sys.argv[1])
    if sys.argv[2] == "thread":
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    warm.serve(sock, idle_seconds=30, lease=warm.take_lease(sock.with_suffix(".lease")))
""")


@pytest.mark.parametrize("case", ["edited", "thread"])
def test_a_server_that_cannot_fork_safely_refuses_and_steps_aside(tmp_path, case):
    """Before each fork the server checks that the code it imported is what is on disk (an editable
    install edited in place is not in any folder's mtime) and that it runs one thread; if not it
    refuses, removes its socket and drops its lease (the next client starts a new server), and exits."""
    import socket

    (tmp_path / "mods").mkdir()
    dep = tmp_path / "mods" / "warmdep.py"
    dep.write_text("VALUE = 1\n")
    sock = tmp_path / "s.sock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), SRC])}
    server = subprocess.Popen(
        [sys.executable, "-c", SMALL_SERVER, str(sock), case], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert warm.lease_held(sock.with_suffix(".lease"))
        if case == "edited":
            dep.write_text("VALUE = 22\n")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(sock))
        request = {
            "module": "warmdep",
            "args": [],
            "cwd": str(tmp_path),
            "env": env,
            "path": sys.path,
            "umask": 0o22,
            "ignored": [],
        }
        with open(os.devnull, "w") as null:
            warm._send(conn, request, fds=[null.fileno()] * 3)
        reply, _ = warm._recv(conn)
        conn.close()
        expected = "changed on disk" if case == "edited" else "runs 2 Python threads"
        assert expected in reply.get("refused", ""), reply
        assert not sock.exists() and not warm.lease_held(sock.with_suffix(".lease"))
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.communicate()


def test_a_warm_jobs_log_says_its_benchmark_measured_the_launcher(job_dir, tmp_path):
    """Memory figures read from Snakemake benchmarks leave out warm jobs: their logs say they ran warm."""
    for name, env in (("warm", env_for(job_dir)), ("cold", env_for(job_dir, SEQPREF_WARM_START="0"))):
        with open(tmp_path / f"{name}.log", "w") as log:
            subprocess.run(
                ["python", "-m", "seqpref.warm", "--", "python", "-m", "warmjob", "exit", "0"],
                cwd=job_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=True,
            )
    assert warm.ran_warm(tmp_path / "warm.log") and not warm.ran_warm(tmp_path / "cold.log")
