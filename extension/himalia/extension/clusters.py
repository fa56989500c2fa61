"""The Dask panel's side of the user's server: the person's Dask clusters, from the platform's
dask-gateway (:class:`himalia.sdk.clusters.Clusters`) with the server's own hub token.

``GET /himalia/clusters``
    ``{"clusters": [cluster...]}``, running and starting ones, newest first. A cluster is
    ``{"name", "status", "started", "profile", "workers", "dashboard"}``: ``started`` is ISO
    8601 (or null), ``workers`` the count asked for, and ``dashboard`` the path of its dashboard
    on the hub's origin (``/services/dask-gateway/clusters/<name>/status``), which only its
    owner may open.

Errors are ``{"status", "message"}``: the gateway's refusal, or 503 when it is not configured
or not answering.
"""

from __future__ import annotations

import asyncio
from datetime import timezone
from urllib.parse import urlparse

import tornado.web
from himalia.sdk import HimaliaError
from himalia.sdk.clusters import Clusters
from jupyter_server.auth.decorator import authorized

from .platform import PanelError, PlatformHandler


def describe(report, gateway_path: str) -> dict:
    """One ``dask_gateway.ClusterReport`` as the panel shows it."""
    options = dict(report.options or {})
    return {
        "name": report.name,
        "status": report.status.name.lower(),
        # dask-gateway gives the machine's local time without a zone.
        "started": (report.start_time.astimezone(timezone.utc).isoformat(timespec="seconds")
                    if report.start_time else None),
        "profile": str(options.get("profile") or ""),
        "workers": int(options.get("workers") or 0),
        "dashboard": f"{gateway_path}/clusters/{report.name}/status",
    }


def listing(clusters: Clusters) -> dict:
    path = urlparse(clusters.address).path.rstrip("/")
    reports = sorted(clusters.list(), key=lambda r: r.start_time.timestamp() if r.start_time else 0,
                     reverse=True)
    return {"clusters": [describe(r, path) for r in reports]}


class ClustersHandler(PlatformHandler):
    """``GET /himalia/clusters``: the person's Dask clusters with their dashboards."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            try:
                return await asyncio.to_thread(lambda: listing(Clusters()))
            except HimaliaError as e:
                raise PanelError(e.status if e.status and e.status < 500 else 503, str(e)) from None

        await self.answer(work)


#: The clusters routes, for ``HimaliaExtensionApp.initialize_handlers``.
HANDLERS = [(r"/himalia/clusters", ClustersHandler)]
