"""Workers forked by a warm launcher: the checkout's own code, the caller's environment, a log
and a session of their own; a start is all or nothing; without a launcher a worker starts as a
process of its own, and a dead launcher is replaced. The tests share a launcher of their own
(their own key), stopped at the end."""

import json
import os
import signal
import socket
import uuid
from pathlib import Path

import pytest

from devmode import jobs, launcher
from devmode.db import open_db
from devmode.models import runs
from tests.conftest import ROOT, tiny_config, wait_for


@pytest.fixture(scope="module")
def own_env():
    """An environment no other launcher serves (a variable of its own is part of the key)."""
    env = {**os.environ, "LAUNCHER_TEST_KEY": uuid.uuid4().hex}
    yield env
    launcher.stop(ROOT, env, wait=60)
    for left in launcher._folder().glob(f"{launcher._key(ROOT, env)}.*"):
        left.unlink(missing_ok=True)


def warm(env, folder: Path) -> int:
    """The pid of a worker that lists a scratch database's datasets, once this environment's
    launcher is up (the first call of a launcher's life gets None and starts it)."""
    return wait_for(
        lambda: launcher.launch(listing(folder), folder / "warm.log", ROOT, env),
        timeout=120,
        interval=0.5,
        what="the launcher",
    )


def address_of(env) -> Path:
    return launcher._folder() / f"{launcher._key(ROOT, env)}.sock"


def test_a_forked_worker_runs_the_cli_with_the_callers_environment_into_its_log(
    own_env, tiny_db, tmp_path
):
    log = tmp_path / "worker.log"
    env = {**own_env, "DEVMODE_DB": tiny_db}  # read by the worker, not part of the key
    # the first call finds no launcher: the caller starts that worker itself, and one launcher
    assert launcher.launch(["datasets", "list"], log, ROOT, env) is None
    pid = wait_for(
        lambda: launcher.launch(["datasets", "list"], log, ROOT, env), timeout=120, interval=0.5
    )
    holder = int(address_of(own_env).with_suffix(".lock").read_text())
    assert pid != holder and parent_of(pid) == holder
    wait_for(lambda: "tiny" in text_of(log), what="the worker's output in its log (DEVMODE_DB)")
    assert "tiny" in text_of(log) and "90" in text_of(log)  # the tiny dataset's 90 rows
    # a second worker for another database, from the same launcher, appends to the same log
    other = tmp_path / "other.db"
    with open_db(other):
        pass
    second = launcher.launch(["datasets", "list"], log, ROOT, {**own_env, "DEVMODE_DB": str(other)})
    assert second and second != pid
    wait_for(lambda: "No datasets yet" in text_of(log), what="the second worker's output")
    # a worker's error goes to its log as the CLI says it, with no traceback
    refused = tmp_path / "refused.log"
    assert launcher.launch(["--db", tiny_db, "job", "training", "999"], refused, ROOT, own_env)
    wait_for(lambda: "No run with id 999" in text_of(refused), what="its refusal")
    assert "Traceback" not in text_of(refused)


def test_jobs_start_their_workers_through_the_launcher_and_cancel_them(
    own_env, tiny_db, tiny_model_dir, monkeypatch, tmp_path
):
    for name in set(os.environ) - set(own_env):
        monkeypatch.delenv(name)
    for name, value in own_env.items():
        monkeypatch.setenv(name, value)  # what jobs.start passes on: this module's launcher
    assert launcher._key(ROOT, dict(os.environ)) == launcher._key(ROOT, own_env)
    warm(own_env, tmp_path)
    holder = int(address_of(own_env).with_suffix(".lock").read_text())
    with open_db(tiny_db) as db:
        run = runs.create_run(
            db, "tiny", tiny_config(tiny_model_dir, epochs=50, early_stopping_patience=0)
        )
    pid = jobs.start(tiny_db, runs.KIND, run.id)
    assert jobs.pid_alive(pid) and parent_of(pid) == holder  # forked, not started from here
    wait_for(lambda: os.getsid(pid) == pid, what="the worker in a session of its own")
    wait_for(lambda: status(tiny_db, run.id) == "running", what="the run running")
    with open_db(tiny_db) as db:
        jobs.request_cancel(db, runs.KIND, run.id)
    wait_for(lambda: status(tiny_db, run.id) == "cancelled", what="the run cancelled")
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the worker gone and reaped")
    log = (runs.KIND.folder(tiny_db, run.id) / "worker.log").read_text()
    assert "Traceback" not in log


def test_a_caller_that_gives_up_before_go_leaves_no_worker(own_env, tmp_path):
    """The caller times out and starts the worker itself: the forked one must not run too."""
    warm(own_env, tmp_path)
    log = tmp_path / "abandoned.log"
    request = {"arguments": listing(tmp_path), "log": str(log), "cwd": str(ROOT), "env": own_env}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(address_of(own_env)))
        conn.sendall(json.dumps(request).encode() + b"\n")
        pid = json.loads(conn.makefile("rb").readline())["pid"]
    # closed without the go: the child exits unstarted, and the launcher reaps it
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the unstarted worker gone")
    assert not log.exists()
    assert launcher.launch(listing(tmp_path), tmp_path / "after.log", ROOT, own_env)


def test_a_request_too_large_or_malformed_gets_no_worker(own_env, tmp_path):
    warm(own_env, tmp_path)
    good = {"arguments": listing(tmp_path), "log": str(tmp_path / "x.log"), "cwd": str(ROOT)}
    for request in (
        b"x" * (launcher.MAX_REQUEST_BYTES + 10),
        b"{not json\n",
        json.dumps({**good, "log": "relative.log", "env": {}}).encode() + b"\n",
        json.dumps({**good, "arguments": [1], "env": {}}).encode() + b"\n",
        json.dumps({**good, "env": ["not", "a", "dict"]}).encode() + b"\n",
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(address_of(own_env)))
            try:
                conn.sendall(request)
            except OSError:
                pass  # it stopped reading: refused
            assert conn.recv(100) == b""  # closed with no pid: nothing was forked
    assert not (tmp_path / "x.log").exists()
    assert launcher.launch(listing(tmp_path), tmp_path / "after.log", ROOT, own_env)


def test_the_launchers_folder_is_private(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = launcher._folder()
    assert folder and folder.stat().st_mode & 0o077 == 0
    folder.chmod(0o755)  # opened up by someone: not used
    assert launcher._folder() is None
    assert launcher.launch(listing(tmp_path), tmp_path / "x.log", ROOT, dict(os.environ)) is None
    folder.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    folder.symlink_to(tmp_path / "elsewhere")  # a link put in its place: not used either
    assert launcher._folder() is None


def test_an_upgraded_package_or_other_settings_get_another_launcher(tmp_path, monkeypatch):
    """A launcher's preloaded modules and process settings are what its workers run with: a
    package installed anew, another variable or CPU set, and the key (the launcher) changes."""
    package = tmp_path / "site" / "fakepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(launcher, "PRELOAD", ("fakepkg", "fakepkg.sub"))
    env = dict(os.environ)
    before = launcher._key(ROOT, env)
    assert launcher._key(ROOT, {**env, "DEVMODE_DB": "other.db"}) == before  # read after fork
    assert launcher._key(ROOT, {**env, "OMP_NUM_THREADS": "1"}) != before
    os.utime(package / "__init__.py", ns=(1, 1))  # pip wrote it again
    assert launcher._key(ROOT, env) != before
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        cpus = os.sched_getaffinity(0)
        again = launcher._key(ROOT, env)
        try:
            os.sched_setaffinity(0, {min(cpus)})  # taskset -c 0
            assert launcher._key(ROOT, env) != again
        finally:
            os.sched_setaffinity(0, cpus)


def test_a_killed_launcher_is_replaced_and_none_is_used_when_turned_off(
    own_env, tmp_path, monkeypatch
):
    assert warm(own_env, tmp_path)
    address = address_of(own_env)
    holder = int(address.with_suffix(".lock").read_text())
    assert str(address).encode() in Path(f"/proc/{holder}/cmdline").read_bytes()
    os.kill(holder, signal.SIGKILL)
    wait_for(lambda: not jobs.pid_alive(holder), what="the launcher gone")
    assert address.exists()  # its socket stays behind, answering nobody
    assert launcher.launch(listing(tmp_path), tmp_path / "w.log", ROOT, own_env) is None
    assert warm(own_env, tmp_path)  # that call started a new one, which took the address over
    assert int(address.with_suffix(".lock").read_text()) != holder
    monkeypatch.setenv("DEVMODE_LAUNCHER", "0")
    assert launcher.launch(listing(tmp_path), tmp_path / "w.log", ROOT, own_env) is None


def listing(folder) -> list[str]:
    """A quick command for a worker: list a scratch database's datasets."""
    return ["--db", str(folder / "scratch.db"), "datasets", "list"]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def text_of(path) -> str:
    return path.read_text() if path.exists() else ""


def status(db_path, run_id: int) -> str:
    with open_db(db_path) as db:
        return runs.get_run(db, run_id).status
