"""Started kernels waiting for job runs, per (Unix account, profile); one kernel per run.

Kernels are started on the runner's event loop thread with a parent-death signal, so a killed
runner takes its kernels with it; their process groups are also recorded in ``pids_dir`` and
killed by the next runner (:func:`~himalia.hub.supervisor.kill_leftovers`). An idle kernel is shut down after ``idle_seconds``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from ..supervisor import die_with_parent, forget

log = logging.getLogger("himalia.jobs")


@dataclass(frozen=True)
class KernelRecipe:
    """How to start a kernel for one account and profile."""

    key: tuple
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    uid: int | None = None
    gid: int | None = None


class PooledKernelManager(AsyncKernelManager):
    """A kernel manager with an explicit command, whose connection file its account can read."""

    def __init__(self, recipe: KernelRecipe, **kw):
        super().__init__(**kw)
        self.recipe = recipe
        self._spec = KernelSpec(argv=list(recipe.argv), display_name="himalia job",
                                language="python", env={})

    @property
    def kernel_spec(self):  # type: ignore[override]
        return self._spec

    def write_connection_file(self, **kwargs):
        result = super().write_connection_file(**kwargs)
        if self.recipe.uid is not None:
            os.chown(self.connection_file, self.recipe.uid, self.recipe.gid)
        return result


@dataclass
class _Waiting:
    km: PooledKernelManager
    since: float = field(default_factory=time.monotonic)


class KernelPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, runtime_dir: Path, *, pids_dir: Path,
                 sizes: dict[str, int] | None = None, default_size: int = 1,
                 idle_seconds: float = 600.0):
        self.loop = loop
        self.runtime_dir = runtime_dir
        self.pids_dir = pids_dir
        self.sizes = sizes or {}
        self.default_size = default_size
        self.idle_seconds = idle_seconds
        self.waiting: dict[tuple, collections.deque[_Waiting]] = collections.defaultdict(collections.deque)
        self.recipes: dict[tuple, KernelRecipe] = {}
        self.starting: dict[tuple, int] = collections.defaultdict(int)
        self.started = 0
        runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(runtime_dir, 0o711)

    def size(self, recipe: KernelRecipe) -> int:
        return self.sizes.get(recipe.key[-1], self.default_size)

    # -- on the event loop ---------------------------------------------------------------------
    async def start(self, recipe: KernelRecipe) -> PooledKernelManager:
        km = PooledKernelManager(recipe, connection_dir=str(self.runtime_dir), transport="tcp",
                                 ip="127.0.0.1")
        kw: dict = {"env": dict(recipe.env), "cwd": recipe.cwd, "preexec_fn": die_with_parent}
        if recipe.uid is not None:
            kw.update(user=recipe.uid, group=recipe.gid, extra_groups=[])
        await km.start_kernel(**kw)
        pid = km.provisioner.pid if km.provisioner else None
        if pid:
            (self.pids_dir / f"{pid}.pid").write_text(f"{pid} {km.connection_file}")
        self.started += 1
        return km

    async def fill(self, recipe: KernelRecipe) -> None:
        """Start kernels for ``recipe`` until its pool has its size."""
        self.recipes[recipe.key] = recipe
        key = recipe.key
        while len(self.waiting[key]) + self.starting[key] < self.size(recipe):
            self.starting[key] += 1
            try:
                km = await self.start(recipe)
            except Exception as e:  # noqa: BLE001 - a kernel that cannot start is logged, runs retry
                log.error("cannot start a kernel for %s: %s", key, e)
                return
            finally:
                self.starting[key] -= 1
            self.waiting[key].append(_Waiting(km))

    async def expire(self) -> None:
        """Shut down kernels that waited longer than ``idle_seconds``."""
        now = time.monotonic()
        for key, queue in list(self.waiting.items()):
            while queue and now - queue[0].since > self.idle_seconds:
                await self.discard(queue.popleft().km)

    async def discard(self, km: PooledKernelManager) -> None:
        pid = km.provisioner.pid if km.provisioner else None
        try:
            await km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass
        forget(self.pids_dir, pid)

    async def close(self) -> None:
        for queue in self.waiting.values():
            while queue:
                await self.discard(queue.popleft().km)

    # -- from a worker thread ------------------------------------------------------------------
    def retire(self, km) -> None:
        """Shut a used kernel down, in the background (kernels serve one run each)."""
        asyncio.run_coroutine_threadsafe(self.discard(km), self.loop)

    def take(self, key, timeout: float = 60):
        """A started kernel for ``key`` (a recipe this pool was given), refilled behind it."""
        recipe = self.recipes[key]

        async def get():
            queue = self.waiting[key]
            km = None
            while queue and km is None:
                candidate = queue.popleft().km
                if await candidate.is_alive():
                    km = candidate
                else:
                    await self.discard(candidate)
            if km is None:
                km = await self.start(recipe)
            self.loop.create_task(self.fill(recipe))
            return km

        return asyncio.run_coroutine_threadsafe(get(), self.loop).result(timeout)


def kernel_pid(km) -> int | None:
    return getattr(getattr(km, "provisioner", None), "pid", None)
