"""Why a kernel died: the server's memory limit, or something else.

A kernel that allocates past its container's memory limit is killed by the Linux OOM killer
and JupyterLab only says "the kernel appears to have died". :class:`KernelExitWatcher`
follows every kernel the server starts; when one dies it reads the OOM kill counter of the
server's memory cgroup (v1 ``memory.oom_control`` or v2 ``memory.events``) and records the
reason with a message meant for the person, logs it, and emits it on the server's event bus
(schema :data:`EXIT_SCHEMA`), where JupyterLab shows it. ``GET /himalia/kernel-exits`` lists
the recent ones.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
EXIT_SCHEMA = "https://events.himalia.dev/kernel_exit/v1"
SCHEMA_FILE = Path(__file__).with_name("events") / "kernel_exit.yaml"
#: Limits at or above this are "no limit" (cgroup v1 writes a huge page-aligned number).
UNLIMITED = 1 << 60
KEEP = 50


def _read_counters(text: str) -> dict[str, int]:
    counters = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counters[parts[0]] = int(parts[1])
    return counters


class MemoryCgroup:
    """The memory cgroup this server runs in (the container's own, under Docker or Kubernetes)."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup")):
        self.root = root

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup; None when unknown."""
        for path in (self.root / "memory" / "memory.oom_control", self.root / "memory.events"):
            try:
                counters = _read_counters(path.read_text())
            except OSError:
                continue
            if "oom_kill" in counters:
                return counters["oom_kill"]
        return None

    def limit(self) -> int | None:
        """The memory limit in bytes; None when there is none."""
        for path in (self.root / "memory" / "memory.limit_in_bytes", self.root / "memory.max"):
            try:
                text = path.read_text().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < UNLIMITED:
                return int(text)
            return None
        return None


def _mebibytes(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


class KernelExitWatcher:
    """Records why kernels die; see the module docstring."""

    def __init__(self, serverapp: Any, log: Any, cgroup: MemoryCgroup | None = None):
        self.serverapp = serverapp
        self.log = log
        self.cgroup = cgroup or MemoryCgroup()
        self.exits: deque[dict] = deque(maxlen=KEEP)
        self._seen_oom = self.cgroup.oom_kills() or 0

    def start(self) -> None:
        events = self.serverapp.event_logger
        events.register_event_schema(SCHEMA_FILE)
        events.add_listener(schema_id=KERNEL_ACTIONS, listener=self._on_kernel_action)

    async def _on_kernel_action(self, logger: Any, schema_id: str, data: dict) -> None:
        if data.get("action") == "start" and data.get("status") == "success" and data.get("kernel_id"):
            kernel_id = data["kernel_id"]
            manager = self.serverapp.kernel_manager
            for event in ("restart", "dead"):
                manager.add_restart_callback(kernel_id, lambda k=kernel_id: self.kernel_died(k), event)

    def kernel_died(self, kernel_id: str) -> dict:
        """Record the death of ``kernel_id``: out of memory when the OOM counter went up."""
        kills = self.cgroup.oom_kills()
        limit = self.cgroup.limit()
        out_of_memory = kills is not None and kills > self._seen_oom
        if kills is not None:
            self._seen_oom = kills
        if out_of_memory:
            size = f" of {_mebibytes(limit)}" if limit else ""
            message = (f"The kernel was stopped because it used more than this server's memory "
                       f"limit{size}; it has restarted and its variables are gone. Use less memory "
                       "(smaller batches, fewer copies) or start your server with a larger profile.")
            reason = "out-of-memory"
        else:
            message = "The kernel stopped unexpectedly; it has restarted and its variables are gone."
            reason = "exited"
        record = {"kernel_id": kernel_id, "reason": reason, "message": message,
                  "memory_limit": limit, "time": time.time()}
        self.exits.append(record)
        self.log.warning("kernel %s died (%s): %s", kernel_id, reason, message)
        try:
            self.serverapp.event_logger.emit(schema_id=EXIT_SCHEMA, data=record)
        except Exception as e:  # an event nobody can read must not hide the record
            self.log.warning("could not emit the kernel exit event: %s", e)
        return record


class KernelExitsHandler(ExtensionHandlerMixin, APIHandler):
    """``GET /himalia/kernel-exits``: ``{"exits": [...]}``, the most recent kernel deaths."""

    auth_resource = "kernels"

    @tornado.web.authenticated
    @authorized
    def get(self) -> None:
        watcher = self.extensionapp.kernel_exits
        self.finish(json.dumps({"exits": list(watcher.exits)}))
