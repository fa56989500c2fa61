"""The Dashboards panel's and the "Publish as dashboard" dialog's side of the user's server: the
platform's dashboards, through its API (:class:`himalia.sdk.Dashboards`) with the server's own
token.

Routes, under the server's base URL; every verb is authenticated by Jupyter Server. Dashboard
names are lowercase letters, digits and ``-``, so none can shadow a route:

``GET /himalia/dashboards``
    ``{"dashboards": [dashboard...]}``: the user's own and those shared with them.
``POST /himalia/dashboards``
    ``{"path", "name", "title"?, "description"?, "job_id"?, "share"?}`` -> 201 for a new
    dashboard, 200 for the next version of one of the user's. The notebook at ``path`` (from
    this server's root, as last saved) is sent to the platform as its JSON.
``GET | PATCH | DELETE /himalia/dashboards/<name>``
    One dashboard; PATCH takes the platform's fields (``title``, ``description``, ``job_id``,
    ``share``); DELETE unpublishes it (204).
``GET /himalia/dashboards/<name>/versions``
    ``{"versions": [{"version", "sha256", "created"}]}``.

Errors are ``{"status", "message"}``: the platform's own status and message, 400 or 404 for a
bad ``path``, and 503 when the platform API is not configured or cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TypeVar

import tornado.web
from himalia.sdk import Dashboards, HimaliaError
from himalia.sdk.dashboards import KEEP
from jupyter_server.auth.decorator import authorized

from .jobs import JobsHandler
from .platform import PanelError, body_fields, platform_error

T = TypeVar("T")
NAME = r"([a-z0-9][a-z0-9-]{0,62})"


class DashboardsHandler(JobsHandler):
    """Base of the ``/himalia/dashboards*`` handlers: notebooks are read as the Jobs handlers
    read them."""

    async def dashboards(self, call: Callable[[Dashboards], T]) -> T:
        """Run ``call`` with the SDK's (blocking) dashboards client in a thread."""
        try:
            client = Dashboards(self.himalia.platform_client())
            return await asyncio.to_thread(call, client)
        except HimaliaError as e:
            raise platform_error(e) from None


class DashboardListHandler(DashboardsHandler):
    """``GET /himalia/dashboards``: what the user may open; ``POST``: publish a notebook."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            return {"dashboards": await self.dashboards(lambda d: d.list())}

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            fields = await self.with_notebook(body_fields(self))
            share = fields.get("share") or {}
            if not isinstance(share, dict):
                raise PanelError(400, 'share: give {"users": [...], "groups": [...], "viewers": bool}.')
            dashboard = await self.dashboards(lambda d: d.publish(
                fields.get("name"), fields["notebook"], title=fields.get("title"),
                description=fields.get("description"), job=fields.get("job_id"),
                share_users=share.get("users"), share_groups=share.get("groups"),
                viewers=share.get("viewers")))
        except PanelError as e:
            self.fail(e)
            return
        self.set_status(201 if dashboard.get("version") == 1 else 200)
        self.finish(json.dumps(dashboard))


class DashboardHandler(DashboardsHandler):
    """``GET | PATCH | DELETE /himalia/dashboards/<name>``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.answer(lambda: self.dashboards(lambda d: d.get(name)))

    @tornado.web.authenticated
    @authorized
    async def patch(self, name: str) -> None:
        async def work() -> dict:
            fields = body_fields(self)
            return await self.dashboards(lambda d: d.update(
                name, title=fields.get("title"), description=fields.get("description"),
                job=fields["job_id"] if "job_id" in fields else KEEP, share=fields.get("share")))

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.answer(lambda: self.dashboards(lambda d: d.unpublish(name)), 204)


class DashboardVersionsHandler(DashboardsHandler):
    """``GET /himalia/dashboards/<name>/versions``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        async def work() -> dict:
            return {"versions": await self.dashboards(lambda d: d.versions(name))}

        await self.answer(work)


#: The dashboards routes, for ``HimaliaExtensionApp.initialize_handlers``.
HANDLERS = [
    (r"/himalia/dashboards", DashboardListHandler),
    (rf"/himalia/dashboards/{NAME}", DashboardHandler),
    (rf"/himalia/dashboards/{NAME}/versions", DashboardVersionsHandler),
]
