"""Start, watch and stop the platform's processes, each in its own process group."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("himalia")


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

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group; SIGKILL whatever is left of it after ``timeout``."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # The leader, or members of its group it left behind.
        signal_group(pgid, signal.SIGKILL)
        self.proc.wait()


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
