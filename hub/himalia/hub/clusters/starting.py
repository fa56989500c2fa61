"""Scheduler plug-ins (``--preload``) for a cluster that is ready sooner: the first workers are
asked for as the scheduler comes up, and the dashboard is attached after that.

Without it the workers are requested only after the client has seen the scheduler running,
opened its connection and sent a scale request, which dask-gateway then passes back to the
scheduler: several round trips during which no worker process is starting. With it the
scheduler's first heartbeat to the gateway already carries ``HIMALIA_CLUSTER_WORKERS``, so the
gateway starts the workers while the client is still connecting. A later ``scale`` or
``adapt`` from the client replaces that count as usual.

The scheduler runs with ``--no-dashboard`` (its HTTP server still listens, and the gateway
still proxies it): Dask's Bokeh dashboard takes about half a second to import, which the
scheduler would otherwise spend before it asks for workers or answers its client. Here it is
imported in a thread once the first workers have connected (on a small machine the cores are
better spent starting them) and attached to the same HTTP server.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger("himalia.clusters")
WORKERS_ENV = "HIMALIA_CLUSTER_WORKERS"


class FirstWorkers(SchedulerPlugin):
    """On scheduler start (after every preload, dask-gateway's included), scale to ``count``."""

    name = "himalia-first-workers"

    def __init__(self, count: int):
        self.count = count

    async def start(self, scheduler) -> None:
        service = scheduler.services.get("gateway")
        if service is None:
            logger.warning("no dask-gateway service on this scheduler: not starting workers early")
            return
        await service.scale(self.count)


class LateDashboard(SchedulerPlugin):
    """Attach Dask's dashboard to the running scheduler's HTTP server once its first
    ``workers`` have connected (or after ``patience`` seconds): until then the machine's cores
    are better spent starting them."""

    name = "himalia-late-dashboard"
    #: dask-gateway starts schedulers without a dashboard prefix (its proxy strips the path).
    prefix = ""

    def __init__(self, workers: int = 0, patience: float = 5.0):
        self.workers = workers
        self.patience = patience
        self.attached: asyncio.Future | None = None
        self._workers_in: asyncio.Event | None = None

    async def start(self, scheduler) -> None:
        self._workers_in = asyncio.Event()
        if len(scheduler.workers) >= self.workers:
            self._workers_in.set()
        self.attached = asyncio.ensure_future(self._attach(scheduler))

    def add_worker(self, scheduler, worker: str) -> None:
        if self._workers_in is not None and len(scheduler.workers) >= self.workers:
            self._workers_in.set()

    async def _attach(self, scheduler) -> None:
        try:
            await asyncio.wait_for(self._workers_in.wait(), self.patience)
        except asyncio.TimeoutError:
            pass
        try:
            module = await asyncio.to_thread(importlib.import_module, "distributed.dashboard.scheduler")
        except ImportError:
            logger.warning("bokeh is not installed: this cluster has no dashboard")
            return
        module.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix=self.prefix)

    async def close(self) -> None:
        if self.attached is not None and not self.attached.done():
            self.attached.cancel()


def first_workers(env=os.environ) -> int:
    try:
        return max(int(env.get(WORKERS_ENV) or 0), 0)
    except ValueError:
        return 0


def dask_setup(scheduler) -> None:
    count = first_workers()
    if count:
        scheduler.add_plugin(FirstWorkers(count))
    # A scheduler started with its dashboard has imported it already: nothing to attach.
    if "distributed.dashboard.scheduler" not in sys.modules:
        scheduler.add_plugin(LateDashboard(count))
