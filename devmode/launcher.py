"""Workers that start warm: a launcher process that has imported torch and transformers once
forks each background job's worker, so a job is at work in well under a second instead of
after the 3-5 s those imports take on 2 cores (``benchmarks/worker_start.py``).

    pid = launch(["job", "training", "3"], log, cwd, env)   # the worker's pid, or None: no
                                                             # launcher is ready, start it yourself

The launcher is the pattern of Android's zygote and of multiprocessing's forkserver with
preloaded modules. There is one per Python executable, working folder, environment (devmode's
own variables aside: the worker reads those after the fork), CPU affinity, umask and niceness.
It listens on a Unix socket in a folder only its user may open, answers only its user, and exits
after ``IDLE_SECONDS`` without a request. The first ``launch`` finds none: it returns None (the
caller starts that worker as a new process, as before) and starts a launcher for the next one.
Only third-party modules are preloaded: each worker imports devmode afresh, so a changed
checkout runs its new code. The forked worker runs ``python -m devmode ARGUMENTS`` in its own
session, its output appended to its log, its signal handlers and random seeds reset.

A start is all or nothing: the forked worker waits for the caller to take its pid ("go") and
exits unstarted if the caller gave up first, so a caller that times out and starts the worker
itself never leaves a second one running.

``DEVMODE_LAUNCHER=0`` turns it off (every worker is a fresh process).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# What the launcher imports once, for every worker it forks: what a worker spends its first
# seconds importing. On 2 cores torch and transformers' modelling code take 3-5 s; SetFit (a
# few-shot run's) 4.5 s more.
PRELOAD = (
    "numpy",
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.bert.modeling_bert",
    "setfit",
)
# A launcher with no request for this long exits (its memory goes back to the machine).
IDLE_SECONDS = 600
# How long either side waits for the other's next message before giving up on the start.
ANSWER_SECONDS = 5.0
# A request (arguments and environment) larger than this is refused.
MAX_REQUEST_BYTES = 1 << 20
# Unix socket addresses are at most 107 bytes; a longer one is not tried.
MAX_ADDRESS_BYTES = 100
# Variables that no preloaded module reads, so one launcher serves every value of them:
# devmode's own (read by the worker after the fork), pytest's (it changes with every test), the
# two that scikit-learn sets when the caller imports it (for Intel's OpenMP, which torch's Linux
# wheels do not use), the two that Streamlit's server sets (for matplotlib and maps), and the
# cache folder torch's compiler sets for itself once the caller has used it.
NOT_IN_KEY = (
    "DEVMODE_",
    "PYTEST_CURRENT_TEST",
    "KMP_DUPLICATE_LIB_OK",
    "KMP_INIT_AT_FORK",
    "MPLBACKEND",
    "MAPBOX_API_KEY",
    "TORCHINDUCTOR_CACHE_DIR",
)
GO = b"g"  # the caller took the pid: the worker may start
_starting: list[subprocess.Popen] = []  # launchers this process started (reaped when they end)
_asked: set[Path] = set()  # the addresses this process asked for workers


def enabled() -> bool:
    """Whether workers may come from a launcher: on a system with fork and Unix sockets that
    say who is calling (Linux), unless ``DEVMODE_LAUNCHER=0``."""
    return (
        hasattr(os, "fork")
        and hasattr(socket, "SO_PEERCRED")
        and os.environ.get("DEVMODE_LAUNCHER", "1") not in ("0", "false", "no")
    )


def launch(arguments: list[str], log: Path, cwd: Path, env: dict[str, str]) -> int | None:
    """Ask the launcher for ``cwd`` and ``env`` (and this process's CPU affinity, umask and
    niceness) to fork a worker running ``python -m devmode ARGUMENTS`` in ``cwd`` with ``env``,
    appending to ``log``; its pid, or None when no launcher answered in time (one is then
    started for the next call, unless one is starting already)."""
    address = _address(cwd, env)
    if address is None:
        return None
    _asked.add(address)
    request = {"arguments": list(arguments), "log": str(log), "cwd": str(cwd), "env": env}
    try:
        with _connection(address) as conn:
            _send_line(conn, request)
            pid = int(json.loads(_read_line(conn))["pid"])
            conn.sendall(GO)
        return pid
    except (OSError, ValueError, KeyError, TypeError):
        if not _alive(address):
            _start_launcher(address, cwd, env)
        return None


def stop(cwd: Path, env: dict[str, str], wait: float = 0.0) -> bool:
    """Stop the launcher for ``cwd`` and ``env``, waiting up to ``wait`` seconds for one that
    is still preloading; whether one was stopped."""
    address = _address(cwd, env)
    return address is not None and _stop(address, wait)


def stop_started(wait: float = 0.0) -> int:
    """Stop the launchers this process asked for workers (what a test session does at its end);
    how many were stopped."""
    return sum(_stop(address, wait) for address in sorted(_asked))


def _stop(address: Path, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            with _connection(address) as conn:
                _send_line(conn, {"stop": True})
                _read_line(conn)
            return True
        except (OSError, ValueError):
            if not _alive(address) or time.monotonic() > deadline:
                return False
            time.sleep(0.2)  # preloading: it answers once it listens


def _address(cwd: Path, env: dict[str, str]) -> Path | None:
    if not enabled():
        return None
    place = _folder()
    if place is None:
        return None
    address = place / f"{_key(cwd, env)}.sock"
    return address if len(os.fsencode(address)) <= MAX_ADDRESS_BYTES else None


def _folder() -> Path | None:
    """This user's folder for launcher sockets: made private, and not used when it is not (or
    is not a folder of its own, a link say)."""
    path = Path(tempfile.gettempdir()) / f"devmode-launchers-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        found = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        return None
    return path


def _key(cwd: Path, env: dict[str, str]) -> str:
    """What a worker inherits from the launcher rather than from the request: the executable,
    the environment the preloaded modules read, and the process's CPU affinity, umask and
    niceness (a launcher started by the caller has the caller's)."""
    kept = sorted((k, v) for k, v in env.items() if not k.startswith(NOT_IN_KEY))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    process = [cpus, _umask(), os.getpriority(os.PRIO_PROCESS, 0)]
    described = json.dumps([sys.executable, str(cwd), kept, process, _installed()])
    return hashlib.sha256(described.encode()).hexdigest()[:20]


def _installed() -> list[int | None]:
    """When each preloaded package was installed (its ``__init__.py``'s time), found without
    importing it: after an upgrade the key changes, and workers come from a launcher that
    imported the new versions (the old one idles out)."""
    import importlib.util

    times = []
    for name in dict.fromkeys(module.split(".")[0] for module in PRELOAD):
        try:
            spec = importlib.util.find_spec(name)
            times.append(os.stat(spec.origin).st_mtime_ns if spec and spec.origin else None)
        except (ImportError, ValueError, OSError):
            times.append(None)
    return times


def _umask() -> str | None:
    """This process's umask, read without setting it (setting it to read it races with other
    threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            return next((line.split()[1] for line in f if line.startswith("Umask:")), None)
    except OSError:
        return None


def _alive(address: Path) -> bool:
    """Whether a launcher holds the address's lock (it may still be preloading)."""
    import fcntl

    try:
        with open(address.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _connection(address: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ANSWER_SECONDS)
    try:
        conn.connect(str(address))
    except OSError:
        conn.close()
        raise
    return conn


def _send_line(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")  # JSON escapes its own newlines


def _read_line(conn: socket.socket) -> bytes:
    """Bytes up to a newline, at most ``MAX_REQUEST_BYTES`` of them; a ValueError when the
    other side closed first or sent more."""
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > MAX_REQUEST_BYTES:
            break
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("closed before a whole message")
        buffer += chunk
    line = buffer.split(b"\n", 1)[0]
    if len(line) > MAX_REQUEST_BYTES:
        raise ValueError(f"more than {MAX_REQUEST_BYTES} bytes")
    return line


def _start_launcher(address: Path, cwd: Path, env: dict[str, str]) -> None:
    """Start ``python -m devmode.launcher ADDRESS`` in its own session; it exits at once when
    another launcher for the address holds the lock."""
    _starting[:] = [p for p in _starting if p.poll() is None]
    try:
        with open(address.with_suffix(".log"), "ab") as log:
            _starting.append(
                subprocess.Popen(
                    [sys.executable, "-m", "devmode.launcher", str(address)],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                )
            )
    except OSError:
        pass  # no launcher: every worker starts as a process of its own


# ----------------------------------------------------------------------------------------------
# The launcher process


def serve(address: Path) -> None:
    """Preload, then fork a worker for each request, until ``IDLE_SECONDS`` pass without one."""
    import fcntl
    import signal

    lock = open(address.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another launcher serves (or is starting to serve) this address
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")  # which process is the launcher (its workers share its name)
    lock.flush()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the worker imports it itself, and says why
            print(
                f"devmode launcher: not preloaded {name}: {type(e).__name__}: {e}", file=sys.stderr
            )
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers
    address.unlink(missing_ok=True)  # a dead launcher's socket (we hold the lock)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        server.bind(str(address))
    finally:
        os.umask(mask)
    bound = address.stat().st_ino
    server.listen(16)
    server.settimeout(IDLE_SECONDS)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                return
            with conn:
                if _answer(conn, closing=(server, lock)) == "stop":
                    return
    finally:
        try:
            if address.stat().st_ino == bound:  # not a successor's socket
                address.unlink()
        except OSError:
            pass


def _answer(conn: socket.socket, closing: tuple) -> str | None:
    """One request: "stop", or a worker forked that starts once the caller says go."""
    conn.settimeout(ANSWER_SECONDS)
    try:
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            return None
        request = json.loads(_read_line(conn))
        if request.get("stop"):
            conn.sendall(b"{}\n")
            return "stop"
        arguments, log, cwd, env = (
            request["arguments"],
            request["log"],
            request["cwd"],
            request["env"],
        )
        if not (
            isinstance(arguments, list)
            and all(isinstance(a, str) for a in arguments)
            and isinstance(env, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            and os.path.isabs(log)
            and os.path.isdir(cwd)
        ):
            return None
        pid = os.fork()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a refused request or a failed fork: no answer, the caller starts its own
    if pid == 0:
        _become_worker(conn, arguments, log, cwd, env, closing=closing)
    try:
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        pass  # the caller is gone: the worker hears no go and exits unstarted
    return None


def _become_worker(conn, arguments, log, cwd, env, closing) -> None:
    """In the forked child: wait for the caller's go, then a fresh session, streams, signals
    and seeds, and ``python -m devmode ARGUMENTS``. Never returns."""
    import runpy
    import signal
    import threading
    import traceback

    code = 1
    try:
        for thing in closing:
            thing.close()  # the lock too: a long worker must not keep a new launcher out
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            go = conn.recv(1) == GO
        except OSError:
            go = False
        conn.close()
        if not go:
            os._exit(0)  # the caller gave up and starts the worker itself
        os.setsid()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # Python's own random reseeds itself at a fork
        for name in [m for m in sys.modules if m == "devmode" or m.startswith("devmode.")]:
            del sys.modules[name]  # imported afresh: the checkout's code as it is now
        sys.argv = ["devmode", *arguments]
        code = 0
        runpy.run_module("devmode", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - a worker's crash goes to its log, as it would
        traceback.print_exc()
        code = 1
    finally:
        try:  # what the interpreter does at exit: join threads, run atexit, flush
            import atexit

            getattr(threading, "_shutdown", lambda: None)()
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
