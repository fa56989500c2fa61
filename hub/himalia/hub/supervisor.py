"""Start, watch and stop the platform's processes, each in its own process group."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("himalia")
PR_SET_PDEATHSIG = 1


@dataclass
class ManagedProcess:
    """One long-running child: started in a new session so its group can be signalled whole."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict = field(default_factory=dict)
    cwd: str | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True,
            )
        self.started_at = time.monotonic()
        log.debug("started %s (pid %s)", self.name, self.proc.pid)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0, descendants_timeout: float = 30.0) -> None:
        """SIGTERM the process group; SIGKILL whatever is left of it after ``timeout``. Then
        wait for the processes it had started in sessions of their own (the hub's managed
        services end when they see the hub gone) and SIGKILL their groups if they linger."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        started = descendants(pgid)
        signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # The leader, or members of its group it left behind.
        signal_group(pgid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + descendants_timeout
        while any(pid_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in started:
            try:
                group = os.getpgid(pid)
            except ProcessLookupError:
                continue
            signal_group(group, signal.SIGKILL)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: This process's pid as its forked children see it (they inherit the module's memory).
_FORKED_BY = os.getpid()


def die_with_parent() -> None:
    """In a child before exec: SIGKILL when the thread that started it ends. A parent that died
    between the fork and this call would leave the child running for good: it exits at once."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != _FORKED_BY:
        os._exit(1)
    os.umask(0o022)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name, in parentheses, may hold spaces: the fields after it are fixed.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, theirs, ...), from ``/proc``."""
    found, todo = [], [pid]
    while todo:
        below = children(todo.pop())
        found += below
        todo += below
    return found


def remember(pids_dir: Path, pid: int, marker: str) -> None:
    """Record a process group for :func:`kill_leftovers`; ``marker`` is part of its command line."""
    (pids_dir / f"{pid}.pid").write_text(f"{pid} {marker}")


def forget(pids_dir: Path, pid: int | None) -> None:
    if pid:
        (pids_dir / f"{pid}.pid").unlink(missing_ok=True)


def kill_leftovers(pids_dir: Path) -> int:
    """Kill the process groups an earlier run of a service recorded in ``pids_dir`` (``<pid>.pid``
    files holding ``"<pid> <marker>"``); how many were alive."""
    killed = 0
    for pidfile in pids_dir.glob("*.pid"):
        try:
            pid_text, _, marker = pidfile.read_text().partition(" ")
            pid = int(pid_text)
            # Only if that pid is still that process: its command line holds the marker (a
            # pid may have been reused since).
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if marker and marker.encode() in cmdline:
                os.killpg(pid, signal.SIGKILL)
                killed += 1
        except (ValueError, OSError):
            pass
        pidfile.unlink(missing_ok=True)
    return killed


def keep_running(argv: list[str], what: str) -> int:
    """Run ``argv`` and start it again at once whenever it exits (the hub notices a dead service
    only every 30 s), pausing longer each time it keeps failing by itself at start; SIGTERM or
    SIGINT ends it and the child. For services that must not stay down (job runner, deployment
    manager); the child gets a parent-death signal."""
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    quick_failures = 0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(argv, preexec_fn=die_with_parent)
        code = child.wait()
        if stopping:
            return 0
        failed_itself = code > 0 and time.monotonic() - started < 10
        quick_failures = quick_failures + 1 if failed_itself else 0
        log.error("%s exited with status %s; restarting it", what, code)
        if quick_failures > 1:
            time.sleep(min(2 ** quick_failures, 60))
    return 0


async def control_socket(path: Path, handle, group: int | None) -> asyncio.AbstractServer:
    """A service's Unix control socket at ``path`` (made anew): the service's own account may
    connect, and, when the service runs as root, the group ``group`` (the API's account)."""
    path.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handle, str(path), limit=256 * 1024 * 1024)
    finally:
        os.umask(old)
    if group is not None and os.geteuid() == 0:
        os.chown(path, 0, group)
        os.chmod(path, 0o660)
    return server
