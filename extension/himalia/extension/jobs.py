"""The Jobs panel's and the Schedule dialog's side of the user's server: scheduled notebook jobs,
through the platform API (:class:`himalia.sdk.Jobs`) with the server's own token.

Routes, under the server's base URL; every verb is authenticated by Jupyter Server. Jobs and runs
are named by id, so no job name can shadow a route:

``GET /himalia/jobs``
    ``{"jobs": [job...]}``: the user's jobs (an admin's: everyone's).
``POST /himalia/jobs``
    ``{"path", "name", ...}`` -> 201 job. The notebook at ``path`` (from this server's root, as
    last saved) is sent to the platform as its JSON: the platform cannot read this server's
    files. The other fields are the platform's (``parameters``, ``schedule``, ``timezone``,
    ``profile``, ``timeout_seconds``, ``max_retries``, ...) and it checks them.
``POST /himalia/jobs/inspect``
    ``{"path"}`` -> ``{"parameters": {name: {"type", "default", "help"}}}``.
``GET /himalia/jobs/schedule-preview?cron=<expr>&timezone=<zone>&count=<n>``
    ``{"next": [iso time...]}``.
``GET | PATCH | DELETE /himalia/jobs/<id>``
    One job; PATCH takes the platform's fields (``{"paused": true}``), and ``path`` as above.
``GET /himalia/jobs/<id>/runs?offset=<n>&limit=<n>``
    ``{"runs": [run...]}``, newest first. ``POST`` ``{"parameters"}`` -> 201: a run now.
``GET /himalia/jobs/runs/<id>``, ``POST .../cancel``, ``POST .../rerun`` (201)
    One run: state, progress, error, outputs, timings.
``GET /himalia/jobs/runs/<id>/output?format=html|ipynb``, ``GET /himalia/jobs/runs/<id>/logs``
    The executed notebook or its HTML (served sandboxed), and the run's logs as text.

Errors are ``{"status", "message"}``: the platform's own status and message (422 naming the
bad field, 404 for a job or run that is not yours, ...), 400 or 404 for a bad ``path``, and 503
when the platform API is not configured or cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TypeVar

import nbformat
import tornado.web
from himalia.sdk import HimaliaError, Jobs
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized

from .platform import PanelError, PlatformHandler, body_fields, platform_error

T = TypeVar("T")
OUTPUT_FORMATS = ("html", "ipynb")
def notebook_path(body: dict) -> str:
    """The ``path`` of a request body: a notebook's path from the server's root."""
    path = body.get("path")
    if not isinstance(path, str) or not path.strip():
        raise PanelError(400, "path: give the notebook's path from the server's root.")
    if not path.endswith(".ipynb"):
        raise PanelError(400, f"path: {path!r} is not a notebook (.ipynb).")
    return path


class JobsHandler(PlatformHandler):
    """Base of the ``/himalia/jobs*`` handlers."""

    async def platform(self, call: Callable[[Jobs], T]) -> T:
        """Run ``call`` with the SDK's (blocking) jobs client in a thread."""
        try:
            jobs = Jobs(self.himalia.platform_client())
            return await asyncio.to_thread(call, jobs)
        except HimaliaError as e:
            raise platform_error(e) from None

    async def read_notebook(self, path: str) -> dict:
        """The notebook at ``path`` as saved, as nbformat JSON."""
        try:
            model = await ensure_async(
                self.contents_manager.get(path, content=True, type="notebook"))
        except tornado.web.HTTPError as e:
            raise PanelError(e.status_code, f"path: {e.log_message or e.reason or path}") from None
        # As saved: without the trust marks the contents manager adds to each cell.
        saved = nbformat.writes(nbformat.from_dict(model["content"]), split_lines=False)
        return json.loads(saved)

    async def with_notebook(self, body: dict) -> dict:
        """``body`` with its ``path`` replaced by that notebook's JSON as ``notebook``."""
        if "notebook" in body:
            raise PanelError(400, "notebook: give the notebook's 'path' on this server instead.")
        fields = dict(body)
        path = notebook_path(fields)
        del fields["path"]
        fields["notebook"] = await self.read_notebook(path)
        return fields



class JobListHandler(JobsHandler):
    """``GET /himalia/jobs``: the user's jobs; ``POST``: a job of a notebook on this server."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            return {"jobs": await self.platform(lambda jobs: jobs.list())}

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        async def work() -> dict:
            fields = await self.with_notebook(body_fields(self))
            name = fields.pop("name", None)
            return await self.platform(lambda jobs: jobs.create(name, **fields))

        await self.answer(work, 201)


class InspectHandler(JobsHandler):
    """``POST /himalia/jobs/inspect``: the typed parameters of a notebook on this server."""

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        async def work() -> dict:
            notebook = await self.read_notebook(notebook_path(body_fields(self)))
            return {"parameters": await self.platform(lambda jobs: jobs.inspect(notebook=notebook))}

        await self.answer(work)


class SchedulePreviewHandler(JobsHandler):
    """``GET /himalia/jobs/schedule-preview``: the next times a cron expression fires."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            cron = self.get_query_argument("cron", "")
            timezone = self.get_query_argument("timezone", "UTC")
            count = self.get_query_argument("count", "5")
            if not count.isdigit():
                raise PanelError(400, "count: must be a whole number.")
            return {"next": await self.platform(
                lambda jobs: jobs.schedule_preview(cron, timezone, int(count)))}

        await self.answer(work)


class JobHandler(JobsHandler):
    """``GET | PATCH | DELETE /himalia/jobs/<id>``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job: str) -> None:
        await self.answer(lambda: self.platform(lambda jobs: jobs.get(int(job))))

    @tornado.web.authenticated
    @authorized
    async def patch(self, job: str) -> None:
        async def work() -> dict:
            fields = body_fields(self)
            if "path" in fields:
                fields = await self.with_notebook(fields)
            return await self.platform(lambda jobs: jobs.update(int(job), **fields))

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def delete(self, job: str) -> None:
        await self.answer(lambda: self.platform(lambda jobs: jobs.delete(int(job))), 204)


class JobRunsHandler(JobsHandler):
    """``GET /himalia/jobs/<id>/runs``: a job's runs, newest first; ``POST``: run it now."""

    @tornado.web.authenticated
    @authorized
    async def get(self, job: str) -> None:
        async def work() -> dict:
            paging = {}
            for key in ("offset", "limit"):
                value = self.get_query_argument(key, "")
                if value and not value.isdigit():
                    raise PanelError(400, f"{key}: must be a whole number.")
                if value:
                    paging[key] = int(value)
            return {"runs": await self.platform(lambda jobs: jobs.runs(int(job), **paging))}

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def post(self, job: str) -> None:
        async def work() -> dict:
            parameters = body_fields(self).get("parameters")
            return await self.platform(lambda jobs: jobs.run(int(job), parameters))

        await self.answer(work, 201)


class RunHandler(JobsHandler):
    """``GET /himalia/jobs/runs/<id>``: one run."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run: str) -> None:
        await self.answer(lambda: self.platform(lambda jobs: jobs.run_info(int(run))))


class CancelRunHandler(JobsHandler):
    """``POST /himalia/jobs/runs/<id>/cancel``: stop a queued or running run."""

    @tornado.web.authenticated
    @authorized
    async def post(self, run: str) -> None:
        await self.answer(lambda: self.platform(lambda jobs: jobs.cancel(int(run))))


class RerunHandler(JobsHandler):
    """``POST /himalia/jobs/runs/<id>/rerun``: the same version, parameters and inputs again."""

    @tornado.web.authenticated
    @authorized
    async def post(self, run: str) -> None:
        await self.answer(lambda: self.platform(lambda jobs: jobs.rerun(int(run))), 201)


class RunOutputHandler(JobsHandler):
    """``GET /himalia/jobs/runs/<id>/output?format=html|ipynb``: the executed notebook.

    The HTML is the job's output, scripts included: it is served with a ``sandbox`` policy, so
    that opened directly it cannot act on this server's origin (the panel shows it in a
    sandboxed frame).
    """

    @property
    def content_security_policy(self) -> str:
        return super().content_security_policy + "; sandbox"

    @tornado.web.authenticated
    @authorized
    async def get(self, run: str) -> None:
        fmt = self.get_query_argument("format", "html")
        try:
            if fmt not in OUTPUT_FORMATS:
                raise PanelError(400, f"format: use {' or '.join(OUTPUT_FORMATS)}.")
            content = await self.platform(lambda jobs: jobs.output(int(run), fmt))
        except PanelError as e:
            self.fail(e)
            return
        if fmt == "ipynb":
            self.set_header("Content-Disposition", f'attachment; filename="run-{run}.ipynb"')
            self.finish(content, set_content_type="application/x-ipynb+json")
        else:
            self.finish(content, set_content_type="text/html; charset=utf-8")


class RunLogsHandler(JobsHandler):
    """``GET /himalia/jobs/runs/<id>/logs``: the runner's log, stdout and stderr as text."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run: str) -> None:
        try:
            text = await self.platform(lambda jobs: jobs.logs(int(run)))
        except PanelError as e:
            self.fail(e)
            return
        self.finish(text, set_content_type="text/plain; charset=utf-8")


#: The jobs routes, for ``HimaliaExtensionApp.initialize_handlers``.
HANDLERS = [
    (r"/himalia/jobs", JobListHandler),
    (r"/himalia/jobs/inspect", InspectHandler),
    (r"/himalia/jobs/schedule-preview", SchedulePreviewHandler),
    (r"/himalia/jobs/(\d+)", JobHandler),
    (r"/himalia/jobs/(\d+)/runs", JobRunsHandler),
    (r"/himalia/jobs/runs/(\d+)", RunHandler),
    (r"/himalia/jobs/runs/(\d+)/cancel", CancelRunHandler),
    (r"/himalia/jobs/runs/(\d+)/rerun", RerunHandler),
    (r"/himalia/jobs/runs/(\d+)/output", RunOutputHandler),
    (r"/himalia/jobs/runs/(\d+)/logs", RunLogsHandler),
]
