"""The command line under signals, as real processes: Ctrl-C sent to its whole process group
(as a terminal sends it) ends it with one line and exit status 130, leaving no file
half-written; SIGKILL of the command (a timeout, the out-of-memory killer) leaves none of its
worker processes alive. Checked in /proc, with bounded waits."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                reason="reads processes from Linux's /proc")

#: Long enough runs that the signal arrives while both processes train (2 runs, 2 processes).
COMMAND = [sys.executable, "-m", "bnlib.experiment", "--epochs", "500", "--seeds", "1",
           "--train-subset", "500", "--test-subset", "100", "--workers", "2", "--quiet"]


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> bytes:
    """Process ``pid``'s command line (empty once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _wait_until(condition, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def _started(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    """The command started in its own process group and session, once its worker has begun
    training (the ledger is not written before a run ends, so: once the worker has been up
    for a while); returns it and its child processes (the worker, the resource tracker)."""
    env = {**os.environ, "BNLIB_CACHE_DIR": str(tmp_path / "cache"), "BNLIB_PROGRESS": "0"}
    command = subprocess.Popen(COMMAND + ["--out", str(tmp_path / "out")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    workers = lambda: {c for c in _children(command.pid)  # noqa: E731
                       if b"spawn_main" in _cmdline(c)}
    if not _wait_until(lambda: len(workers()) >= 1, timeout=180):
        command.kill()
        pytest.fail(f"no worker process started: {command.communicate()}")
    time.sleep(8)  # the worker imports torch and starts its run
    assert command.poll() is None, command.communicate()
    return command, _children(command.pid)


def _half_written(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_ctrl_c_ends_with_one_line_exit_130_and_nothing_half_written(tmp_path):
    command, children = _started(tmp_path)
    os.killpg(command.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        out, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
    assert command.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Interrupted" in lines[0], err
    assert "cache" in lines[0] and "same command" in lines[0]
    assert _half_written(tmp_path) == []
    assert not (tmp_path / "out" / "results.csv").exists()  # the runs had not finished
    assert _wait_until(lambda: not any(map(_alive, children)), timeout=30), children


def test_sigkill_of_the_command_leaves_no_worker_alive(tmp_path):
    command, children = _started(tmp_path)
    assert children  # the worker (and multiprocessing's resource tracker)
    command.kill()  # SIGKILL to the command alone, as a timeout or the OOM killer sends it
    command.communicate(timeout=30)
    try:
        assert _wait_until(lambda: not any(map(_alive, children)), timeout=30), [
            (pid, _cmdline(pid)) for pid in children if _alive(pid)]
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
