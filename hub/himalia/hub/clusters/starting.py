"""A scheduler plug-in (``--preload``) that asks for the cluster's first workers as the
scheduler comes up.

Without it the workers are requested only after the client has seen the scheduler running,
opened its connection and sent a scale request, which dask-gateway then passes back to the
scheduler: several round trips during which no worker process is starting. With it the
scheduler's first heartbeat to the gateway already carries ``HIMALIA_CLUSTER_WORKERS``, so the
gateway starts the workers while the client is still connecting. A later ``scale`` or
``adapt`` from the client replaces that count as usual.
"""

from __future__ import annotations

import logging
import os

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


def first_workers(env=os.environ) -> int:
    try:
        return max(int(env.get(WORKERS_ENV) or 0), 0)
    except ValueError:
        return 0


def dask_setup(scheduler) -> None:
    count = first_workers()
    if count:
        scheduler.add_plugin(FirstWorkers(count))
