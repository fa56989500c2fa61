"""The scheduler plug-in that attaches Dask's dashboard after the first workers: a real
in-process scheduler and worker (no gateway), and its HTTP server asked for the dashboard."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import httpx
from distributed import Scheduler, Worker

from himalia.hub.clusters.starting import LateDashboard


async def status(scheduler) -> int:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{scheduler.http_server.port}/status", timeout=30)
        return r.status_code


def run(coro):
    return asyncio.run(coro)


@asynccontextmanager
async def scheduler_with(plugin: LateDashboard):
    """A started scheduler without its dashboard (as the gateway starts them), with ``plugin``."""
    async with Scheduler(dashboard=False, dashboard_address="127.0.0.1:0", host="127.0.0.1",
                         port=0) as scheduler:
        scheduler.add_plugin(plugin)
        await plugin.start(scheduler)
        yield scheduler


def test_the_dashboard_is_attached_once_the_first_workers_are_in():
    async def scenario():
        plugin = LateDashboard(workers=1, patience=60)
        async with scheduler_with(plugin) as scheduler:
            # The HTTP server answers, without the dashboard, while no worker is in.
            before = await status(scheduler)
            assert not plugin.attached.done()
            async with Worker(scheduler.address, nthreads=1, dashboard=False):
                await asyncio.wait_for(plugin.attached, 60)
                after = await status(scheduler)
        return before, after

    before, after = run(scenario())
    assert before == 404 and after == 200


def test_without_workers_to_wait_for_it_is_attached_at_once():
    async def scenario():
        plugin = LateDashboard(workers=0, patience=60)
        async with scheduler_with(plugin) as scheduler:
            await asyncio.wait_for(plugin.attached, 60)
            return await status(scheduler)

    assert run(scenario()) == 200
