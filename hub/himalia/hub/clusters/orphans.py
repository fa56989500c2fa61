"""A scheduler plug-in (``--preload``) that ends a cluster nobody is connected to any more.

A kernel that shuts down closes its clusters itself; a kernel that is killed cannot. Its
client's connection to the scheduler then drops at once, and after
``HIMALIA_CLUSTER_ORPHAN_SECONDS`` without any client the cluster asks the gateway to stop it
(with the cluster's own API token, as dask-gateway's idle timeout does). 0 turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import aiohttp

logger = logging.getLogger("himalia.clusters")
#: The scheduler's own client, always present.
INTERNAL_CLIENTS = {"fire-and-forget"}


def has_clients(scheduler) -> bool:
    return any(name not in INTERNAL_CLIENTS for name in scheduler.clients)


async def watch(scheduler, seconds: float, stop, clock=time.monotonic) -> None:
    """Call ``stop()`` once no client has been connected for ``seconds``."""
    last_seen = clock()
    while True:
        await asyncio.sleep(max(seconds / 4, 0.5))
        if has_clients(scheduler):
            last_seen = clock()
        elif clock() - last_seen > seconds:
            logger.warning("No client for %.0f s: stopping the cluster", seconds)
            await stop()
            return


async def stop_through_gateway(env=os.environ) -> None:
    url = f"{env['DASK_GATEWAY_API_URL']}/v1/clusters/{env['DASK_GATEWAY_CLUSTER_NAME']}"
    async with aiohttp.ClientSession() as session:
        async with session.delete(url, headers={"Authorization": f"token {env['DASK_GATEWAY_API_TOKEN']}"}):
            pass


async def dask_setup(scheduler) -> None:
    seconds = float(os.environ.get("HIMALIA_CLUSTER_ORPHAN_SECONDS") or 0)
    if seconds > 0 and "DASK_GATEWAY_API_URL" in os.environ:
        scheduler._himalia_orphans = asyncio.ensure_future(watch(scheduler, seconds, stop_through_gateway))
