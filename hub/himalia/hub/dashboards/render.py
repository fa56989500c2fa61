"""The dashboards service: Voilà behind the hub's OAuth, one URL per dashboard, pre-heated.

* ``/services/dashboards/`` is the gallery of the dashboards shared with the caller;
  ``/services/dashboards/<name>/`` renders one with Voilà. Who may see which is
  :func:`.service.may_view`; anyone else gets 404.
* Every published version is written under ``<root>/live/<name>/v<N>/`` and gets a pool of
  pre-heated kernels (Voilà's ``preheat_kernel``): the notebook is already executed when a viewer
  arrives. A pool is refilled when its dashboard is republished and when its linked job has a
  newer successful run, so a viewer always sees the latest outputs.
* Kernels run the published notebook as its owner (their Unix account when the service runs as
  root; never as root), with an environment of their own (nothing of the service's), and read
  the linked job's outputs through ``/services/dashboards/data/``: a read-only pass-through to
  the platform API that answers GETs of that one job only, with a key per dashboard.
* Viewers reach kernels only through Voilà's widget channel, which accepts comm messages and no
  code (Voilà's ``allowed_message_types``), and only the kernel of their own page. No kernel,
  contents, files or tree API is served.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from base64 import b64decode
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import tornado.web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.kernels.handlers import KernelHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import url_path_join
from jupyterhub.singleuser.extension import JupyterHubAuthorizer, JupyterHubIdentityProvider
from sqlalchemy import select
from traitlets.config import Config
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.static_file_handler import TemplateStaticFileHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler

from ..jobs.models import Job
from ..owners import Account, Owners
from ..services.api.identity import platform_roles
from ..storage import Database
from . import service
from .models import Dashboard, DashboardVersion

log = logging.getLogger("himalia.dashboards")

SERVICE = "dashboards"
PREFIX = service.SERVICE_PREFIX
HERE = Path(__file__).parent
#: Scopes of the owner's token the service holds to read a linked job's outputs for its kernels.
DATA_TOKEN_SCOPES = ["access:services!service=himalia", "read:users:name!user",
                     "read:users:groups!user", "read:roles:users!user"]
DATA_TOKEN_SECONDS = 24 * 3600
#: What a dashboard's kernel may read through the data pass-through: GETs under the linked job.
DATA_ROUTES = ("jobs/{job}", "jobs/{job}/values/", "jobs/{job}/runs")
#: Environment variables a kernel keeps from the service's (no token, secret or database URL).
KERNEL_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
#: The dashboard pages load only what the service serves (no CDN), and are never framed
#: elsewhere; Voilà's pages run inline scripts.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self' ws: wss:; frame-ancestors 'self'")

#: The viewer whose request is starting or taking a kernel (set by the dashboard handler).
_viewer: contextvars.ContextVar[str | None] = contextvars.ContextVar("viewer", default=None)


@dataclass
class ServiceConfig:
    db_url: str
    root: str
    state_dir: str
    api_url: str
    public_url: str = ""
    system_users: bool = False
    user_prefix: str = "jupyter-"
    account_registry: str = ""
    home_root: str = "/home"
    pool_size: int = 1
    refill_delay: float = 3.0
    poll_seconds: float = 2.0
    kernel_idle_seconds: int = 600
    extra: dict = field(default_factory=dict)


@dataclass
class Live:
    """A dashboard as the service serves it now."""

    id: int
    name: str
    owner: str
    title: str
    version: int
    created: datetime
    job_id: int | None
    notebook_path: str  # relative to the live root: <name>/v<N>/<name>.ipynb
    job_name: str = ""
    data_run: int | None = None
    finished_at: datetime | None = None
    key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    account: Account | None = None
    #: (version, data run) of the render the thumbnail was last taken from.
    thumbnail_taken: tuple | None = None


# -- kernels ---------------------------------------------------------------------------------
class OwnerKernelManager(AsyncIOLoopKernelManager):
    """Starts a kernel as the account given in ``user``/``group`` (Popen's), which must read its
    connection file."""

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if kw.get("user") is not None:
            os.chown(self.connection_file, kw["user"], kw["group"])
        return await super()._async_launch_kernel(kernel_cmd, **kw)


class DashboardKernelManager(AsyncMappingKernelManager):
    """Kernels of dashboards: the owner's account and environment, one kernel spec, and a record
    of which viewer holds which kernel."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kernel_manager_class = f"{__name__}.OwnerKernelManager"
        self.holders: dict[str, str] = {}

    async def start_kernel(self, kernel_name=None, **kwargs):
        app: DashboardsApp = self.parent
        folder = str(kwargs.get("path") or "")
        live = app.live_by_folder(folder)
        if live is None:
            raise tornado.web.HTTPError(404, "This dashboard is not published any more.")
        account = await app.account(live)
        kwargs["env"] = app.kernel_env(live, account, kwargs.get("env") or {})
        if account.uid is not None:
            kwargs.update(account.popen_user())
        kernel_id = await super().start_kernel(kernel_name="python3", **kwargs)
        viewer = _viewer.get()
        if viewer:
            self.holders[kernel_id] = viewer
        return kernel_id

    def cwd_for_path(self, path, **kwargs):
        app: DashboardsApp = self.parent
        live = app.live_by_folder(str(path or ""))
        if live is not None and live.account is not None:
            return live.account.home
        return super().cwd_for_path(path, **kwargs)

    async def shutdown_kernel(self, kernel_id, *args, **kwargs):
        self.holders.pop(kernel_id, None)
        return await super().shutdown_kernel(kernel_id, *args, **kwargs)


# -- identity --------------------------------------------------------------------------------
class HubIdentityProvider(JupyterHubIdentityProvider):
    """The hub's OAuth for this service (``JUPYTERHUB_*`` from the hub); Voilà passes a token
    setting that does not apply."""

    def __init__(self, **kwargs):
        kwargs.pop("token", None)
        kwargs.pop("login_handler_class", None)
        super().__init__(**kwargs)


def shared_dashboard(app: "DashboardsApp", handler, name: str) -> tuple[int, bytes | None]:
    """(id, thumbnail) of dashboard ``name`` when the caller may see it; 404 otherwise."""
    viewer, roles, groups = person(handler)
    with app.db.session() as session:
        try:
            d = service.find(session, name, viewer, roles, groups)
        except service.DashboardError as e:
            raise tornado.web.HTTPError(e.status, str(e)) from None
        return d.id, d.thumbnail


def person(handler) -> tuple[str, list[str], list[str]]:
    """(name, platform roles, groups) of the caller of ``handler``."""
    user = handler.current_user
    model = getattr(user, "hub_user", None) or {}
    return model.get("name", ""), platform_roles(model), list(model.get("groups") or [])


class OwnKernelMixin:
    """Only the viewer who was given a kernel may use it (404 for anyone else)."""

    def check_kernel(self, kernel_id: str) -> None:
        holders = self.kernel_manager.holders
        name = person(self)[0]
        if not name or holders.get(kernel_id) != name:
            raise tornado.web.HTTPError(404, "No such kernel.")


class OwnKernelWebsocketHandler(OwnKernelMixin, VoilaKernelWebsocketHandler):
    async def pre_get(self):
        await super().pre_get()
        self.check_kernel(self.kernel_id)


class OwnKernelHandler(OwnKernelMixin, KernelHandler):
    async def prepare(self):
        await super().prepare()
        self.check_kernel(self.path_kwargs.get("kernel_id") or self.path_args[0])

    async def delete(self, kernel_id):
        raise tornado.web.HTTPError(405, "Close the dashboard's page to end its kernel.")


class OwnShutdownHandler(OwnKernelMixin, VoilaShutdownKernelHandler):
    async def prepare(self):
        await super().prepare()
        self.check_kernel(self.path_kwargs.get("kernel_id") or self.path_args[0])


class OwnRequestInfoHandler(OwnKernelMixin, RequestInfoSocketHandler):
    def open(self, kernel_id):
        if self.kernel_manager.holders.get(kernel_id) is None:
            self.close(4004, "No such kernel.")
            return
        return super().open(kernel_id)


class TemplateFiles(TemplateStaticFileHandler):
    """Voilà's template assets, with any path that is not ``<template>/static/<file>`` refused
    as 404 (Voilà's own handler answers some of them with a 500)."""

    async def get(self, path: str, include_body: bool = True):
        parts = path.split("/")
        if (len(parts) < 3 or parts[1] != "static" or not re.fullmatch(r"[A-Za-z0-9_-]+", parts[0])
                or any(p in ("", ".", "..") for p in parts[2:])):
            raise tornado.web.HTTPError(404)
        return await super().get(path, include_body)


# -- pages -----------------------------------------------------------------------------------
class PageMixin:
    def set_default_headers(self):
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def write_error(self, status_code, **kwargs):
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message
        if self.request.path.startswith(PREFIX + "data/") or "json" in self.request.headers.get("Accept", ""):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": message}))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.application.settings["himalia_app"].page(
            "error.html", status=status_code, message=message))


class DashboardHandler(PageMixin, TornadoVoilaHandler):
    """One dashboard, by name, for the people it is shared with."""

    @tornado.web.authenticated
    async def get(self, name: str):
        app: DashboardsApp = self.settings["himalia_app"]
        viewer = person(self)[0]
        dashboard_id, _ = shared_dashboard(app, self, name)
        live = await app.ensure_live(dashboard_id)
        if live is None:
            raise tornado.web.HTTPError(404, f"Dashboard {name!r} has no published notebook.")
        await app.ensure_fresh(live)
        self.viewed = dashboard_id
        self.set_header("X-Himalia-Preheated", "1" if app.preheated(live) else "0")
        self.set_header("X-Himalia-Data-Run", str(live.data_run or ""))
        token = _viewer.set(viewer)
        try:
            async for html in self.get_generator(path=live.notebook_path):
                self.write(html)
                self.flush()
        finally:
            _viewer.reset(token)

    @tornado.web.authenticated
    async def head(self, name: str):
        """Whether the next visit would be served by a pre-heated kernel (takes none)."""
        app: DashboardsApp = self.settings["himalia_app"]
        dashboard_id, _ = shared_dashboard(app, self, name)
        live = await app.ensure_live(dashboard_id)
        if live is None:
            raise tornado.web.HTTPError(404)
        self.set_header("X-Himalia-Preheated", "1" if app.preheated(live) else "0")

    def on_finish(self):
        # Counted once the page is out, so the write is not in the viewer's way.
        dashboard_id = getattr(self, "viewed", None)
        if dashboard_id is not None and self.get_status() == 200:
            app: DashboardsApp = self.settings["himalia_app"]
            with app.db.session() as session:
                service.record_view(session, dashboard_id)


class GalleryHandler(PageMixin, JupyterHandler):
    """The dashboards shared with the caller: titles, thumbnails, freshness, owners."""

    @tornado.web.authenticated
    async def get(self):
        app: DashboardsApp = self.settings["himalia_app"]
        viewer, roles, groups = person(self)
        with app.db.session() as session:
            found = service.visible(session, viewer, roles, groups)
            cards = [service.dashboard_json(session, d, "") for d in found]
        now = datetime.now(timezone.utc)
        for card in cards:
            card["fresh_text"] = freshness_text(card["freshness"], now)
        self.finish(app.page("gallery.html", cards=cards, viewer=viewer))


class ThumbnailHandler(PageMixin, JupyterHandler):
    @tornado.web.authenticated
    async def get(self, name: str):
        app: DashboardsApp = self.settings["himalia_app"]
        _, data = shared_dashboard(app, self, name)
        if not data:
            raise tornado.web.HTTPError(404, "No thumbnail yet.")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=60")
        self.finish(data)


class DataHandler(PageMixin, tornado.web.RequestHandler):
    """Read-only access of a dashboard's kernels to its linked job, as its owner."""

    async def get(self, path: str):
        app: DashboardsApp = self.settings["himalia_app"]
        auth = self.request.headers.get("Authorization", "")
        key = auth.split(" ", 1)[1].strip() if " " in auth else ""
        live = app.live_by_key(key)
        if live is None:
            raise tornado.web.HTTPError(401, "This key is not a dashboard's.")
        if live.job_id is None:
            raise tornado.web.HTTPError(403, f"Dashboard {live.name!r} is linked to no job: link "
                                        "one to read its outputs.")
        if not app.data_path_allowed(live, path):
            raise tornado.web.HTTPError(403, f"A dashboard's kernel reads only its job's outputs "
                                        f"(jobs/{live.job_id}/...), not {path}.")
        token = await app.owner_token(live.owner)
        response = await app.http.get(f"{app.service_config.api_url.rstrip('/')}/api/v1/{path}",
                                      params={k: v[-1].decode() for k, v in self.request.query_arguments.items()},
                                      headers={"Authorization": f"token {token}"})
        self.set_status(response.status_code)
        for header in ("Content-Type", "Content-Disposition"):
            if header in response.headers:
                self.set_header(header, response.headers[header])
        self.finish(response.content)

    def put(self, path: str):
        raise tornado.web.HTTPError(405, "A dashboard's kernel only reads.")

    post = patch = delete = put


def freshness_text(fresh: dict | None, now: datetime) -> str:
    if not fresh or not fresh.get("finished_at"):
        return ""
    when = datetime.fromisoformat(fresh["finished_at"])
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    day = when.date()
    if day == now.date():
        label = "today"
    elif (now.date() - day).days == 1:
        label = "yesterday"
    else:
        label = when.strftime("%Y-%m-%d")
    return f"data from {label} {when.strftime('%H:%M')} UTC"


# -- the application -------------------------------------------------------------------------
class DashboardsApp(Voila):
    """Voilà, serving the live dashboards of the platform database."""

    def __init__(self, service_config: ServiceConfig, hub_api_url: str, hub_token: str, **kwargs):
        super().__init__(**kwargs)
        self.service_config = service_config
        self.hub_api_url = hub_api_url
        self.hub_token = hub_token
        self.db = Database(service_config.db_url)
        self.lives: dict[int, Live] = {}
        self.http: httpx.AsyncClient | None = None
        self.owners: Owners | None = None
        self._tokens: dict[str, tuple[float, str]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.pages = Environment(loader=FileSystemLoader(str(HERE / "pages")),
                                 autoescape=select_autoescape(["html"]))
        self.hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"

    @property
    def live_root(self) -> Path:
        return Path(self.service_config.root) / "live"

    def page(self, template: str, **context) -> str:
        return self.pages.get_template(template).render(prefix=PREFIX, hub_prefix=self.hub_prefix, **context)

    # -- lookups
    def live_by_folder(self, folder: str) -> Live | None:
        folder = folder.strip("/")
        return next((live for live in self.lives.values()
                     if os.path.dirname(live.notebook_path) == folder), None)

    def live_by_key(self, key: str) -> Live | None:
        if not key:
            return None
        return next((live for live in self.lives.values() if secrets.compare_digest(live.key, key)), None)

    def data_path_allowed(self, live: Live, path: str) -> bool:
        path = path.strip("/")
        if ".." in path.split("/") or "%" in path:
            return False
        return any(path == f"jobs/{job}" or path.startswith(f"jobs/{job}/values/")
                   for job in filter(None, (str(live.job_id), live.job_name)))

    async def account(self, live: Live) -> Account:
        if live.account is None:
            live.account = await self.owners.account(live.owner)
        return live.account

    def kernel_env(self, live: Live, account: Account, given: dict) -> dict:
        env = {k: os.environ[k] for k in KERNEL_ENV_KEEP if k in os.environ}
        env.update({k: v for k, v in given.items() if k.startswith(("VOILA_", "SCRIPT_NAME", "PATH_INFO",
                                                                   "QUERY_STRING", "SERVER_"))})
        env.update({
            "HOME": account.home, "USER": account.name, "LOGNAME": account.name,
            "PYTHONUNBUFFERED": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "JUPYTERHUB_USER": live.owner,
            "HIMALIA_DASHBOARD": live.name,
            # himalia.sdk.latest(...) reads the linked job's outputs through the pass-through.
            "HIMALIA_API_URL": f"http://127.0.0.1:{self.port}{PREFIX}data/",
            "JUPYTERHUB_API_TOKEN": live.key,
        })
        if live.job_id is not None:
            env["HIMALIA_DASHBOARD_JOB_ID"] = str(live.job_id)
        return env

    async def owner_token(self, owner: str) -> str:
        held = self._tokens.get(owner)
        if held and held[0] - time.monotonic() > 3600:
            return held[1]
        token, _ = await self.owners.mint_token(owner, "himalia dashboards: read a linked job's outputs",
                                                DATA_TOKEN_SECONDS, DATA_TOKEN_SCOPES)
        self._tokens[owner] = (time.monotonic() + DATA_TOKEN_SECONDS, token)
        return token

    # -- keeping the pools in step with the database
    async def ensure_live(self, dashboard_id: int) -> Live | None:
        """The served form of a dashboard: its current version written out and pooled."""
        lock = self._locks.setdefault(dashboard_id, asyncio.Lock())
        async with lock:
            with self.db.session() as session:
                d = session.get(Dashboard, dashboard_id)
                if d is None:
                    await self._retire(dashboard_id)
                    return None
                live = self.lives.get(dashboard_id)
                # (An id can come back after an unpublish: the name and creation time tell.)
                if live is not None and (live.name, live.version, live.created) == (
                        d.name, d.version, d.created_at):
                    if live.job_id != d.job_id:
                        live.job_id, live.job_name = d.job_id, job_name(session, d.job_id)
                    live.title = d.title
                    return live
                version = session.scalar(select(DashboardVersion).where(
                    DashboardVersion.dashboard_id == d.id, DashboardVersion.version == d.version))
                if version is None:
                    return None
                folder = self.live_root / d.name / f"v{d.version}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{d.name}.ipynb").write_text(version.notebook)
                new = Live(id=d.id, name=d.name, owner=d.owner, title=d.title, version=d.version,
                           created=d.created_at, job_id=d.job_id, notebook_path=f"{d.name}/v{d.version}/{d.name}.ipynb",
                           job_name=job_name(session, d.job_id))
                fresh = service.freshness(session, d.job_id)
            old = self.lives.get(dashboard_id)
            if old is not None and old.name == new.name:
                new.key, new.account = old.key, (old.account if old.owner == new.owner else None)
            new.data_run, new.finished_at = (fresh if fresh else (None, None))
            self.lives[dashboard_id] = new
            if old is not None:
                await self._drain(old.notebook_path)
                if old.notebook_path != new.notebook_path:
                    shutil.rmtree(self.live_root / old.name / f"v{old.version}", ignore_errors=True)
            self._fill(new)
            return new

    def preheated(self, live: Live) -> bool:
        """Whether the dashboard's pool holds a started kernel (running or done with the
        notebook)."""
        pool = self.kernel_manager._pools.get(live.notebook_path) or []
        return bool(pool) and pool[0].done() and pool[0].exception() is None

    async def ensure_fresh(self, live: Live) -> None:
        """Refill the pool when the linked job has a newer successful run than its kernels used."""
        if live.job_id is None:
            return
        with self.db.session() as session:
            fresh = service.freshness(session, live.job_id)
        run = fresh[0] if fresh else None
        if run != live.data_run:
            log.info("dashboard %s: job %s has run %s, refilling its kernels", live.name, live.job_id, run)
            live.data_run, live.finished_at = (fresh if fresh else (None, None))
            await self._drain(live.notebook_path)
            self._fill(live)

    def _fill(self, live: Live) -> None:
        km = self.kernel_manager
        size = max(0, self.service_config.pool_size)
        km.kernel_pools_config = {**km.kernel_pools_config, live.notebook_path: {"pool_size": size}}
        if size:
            km.fill_if_needed(delay=0, notebook_name=live.notebook_path)

    async def _drain(self, notebook_path: str) -> None:
        km = self.kernel_manager
        pool = km._pools.pop(notebook_path, [])
        km.notebook_data.pop(notebook_path, None)
        for task in pool:
            try:
                started = await task
            except Exception:  # noqa: BLE001 - a kernel that failed to start has nothing to stop
                continue
            try:
                await km.shutdown_kernel(started["kernel_id"], now=True)
            except Exception as e:  # noqa: BLE001
                log.warning("could not stop a pooled kernel of %s: %s", notebook_path, e)

    async def _retire(self, dashboard_id: int) -> None:
        """An unpublished dashboard: its pool stopped, its files gone."""
        live = self.lives.pop(dashboard_id, None)
        if live is None:
            return
        await self._drain(live.notebook_path)
        shutil.rmtree(self.live_root / live.name, ignore_errors=True)

    async def take_thumbnails(self) -> None:
        """A dashboard's thumbnail: the first image its pre-heated render produced."""
        km = self.kernel_manager
        for live in list(self.lives.values()):
            if live.thumbnail_taken == (live.version, live.data_run):
                continue
            for task in km._pools.get(live.notebook_path, []):
                if not task.done() or task.exception() is not None:
                    continue
                render = task.result().get("task")
                if render is None or not render.done() or render.exception() is not None:
                    continue
                png = first_png(task.result()["renderer"].notebook)
                live.thumbnail_taken = (live.version, live.data_run)
                if png:
                    with self.db.session() as session:
                        d = session.get(Dashboard, live.id)
                        if d is not None:
                            d.thumbnail = png
                break

    async def sync(self) -> None:
        with self.db.session() as session:
            rows = session.execute(select(Dashboard.id, Dashboard.version, Dashboard.job_id)).all()
        current = {row[0] for row in rows}
        for dashboard_id in [i for i in self.lives if i not in current]:
            await self._retire(dashboard_id)
        for dashboard_id, version, job_id in rows:
            live = await self.ensure_live(dashboard_id)
            if live is not None:
                await self.ensure_fresh(live)
        await self.take_thumbnails()

    async def sync_forever(self) -> None:
        self.http = httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(retries=3))
        cfg = self.service_config
        self.owners = Owners(self.http, self.hub_api_url, self.hub_token, state_dir=cfg.state_dir,
                             system_users=cfg.system_users, user_prefix=cfg.user_prefix,
                             account_registry=cfg.account_registry, home_root=cfg.home_root)
        while True:
            try:
                await self.sync()
            except Exception:  # noqa: BLE001 - keep serving; the next round retries
                log.exception("dashboards: syncing with the database failed")
            await asyncio.sleep(cfg.poll_seconds)

    # -- Voilà's application
    def init_settings(self):
        settings = super().init_settings()
        settings["himalia_app"] = self
        # Pages, styles and scripts go out gzipped (the lab theme's styles shrink about 6x).
        settings["compress_response"] = True
        self._record_pool_holders()
        return settings

    def _record_pool_holders(self) -> None:
        """A pre-heated kernel handed to a page belongs to that page's viewer. (Voilà's pooling
        class is made by a factory around ours and defines this method itself, so it is wrapped
        on the instance.)"""
        km = self.kernel_manager
        take = km.get_rendered_notebook

        async def get_rendered_notebook(*args, **kwargs):
            task, cache, kernel_id = await take(*args, **kwargs)
            viewer = _viewer.get()
            if viewer:
                km.holders[kernel_id] = viewer
            return task, cache, kernel_id

        km.get_rendered_notebook = get_rendered_notebook

    def init_handlers(self):
        join = url_path_join
        name = r"(?P<name>[a-z0-9][a-z0-9-]{0,62})"
        kernel = r"(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)"
        base = [handler for handler in super().init_handlers()
                if any(handler[0].startswith(join(self.server_url, p)) for p in (
                    "voila/static/", "voila/api/themes/", "voila/labextensions/"))]
        hub = [(join(self.server_url, path), *rest) for path, *rest in self.identity_provider.get_handlers()]
        return [
            *base, *hub,
            (join(self.server_url, r"voila/templates/(.*)"), TemplateFiles),
            (join(self.server_url, r"api/kernels/%s" % kernel), OwnKernelHandler),
            (join(self.server_url, r"api/kernels/%s/channels" % kernel), OwnKernelWebsocketHandler),
            (join(self.server_url, r"voila/api/shutdown/%s" % kernel), OwnShutdownHandler),
            (join(self.server_url, r"voila/query/%s" % kernel), OwnRequestInfoHandler),
            (join(self.server_url, r"data/api/v1/(.*)"), DataHandler),
            (self.server_url, GalleryHandler),
            (join(self.server_url, name + "/thumbnail.png"), ThumbnailHandler),
            (join(self.server_url, name + "/"), DashboardHandler, {
                "template_paths": self.template_paths, "config": self.config,
                "voila_configuration": self.voila_configuration}),
            (join(self.server_url, name), tornado.web.RedirectHandler, {"url": self.server_url + "{name}/"}),
        ]

    def start(self):
        for old in (self.live_root,):
            shutil.rmtree(old, ignore_errors=True)
        self.live_root.mkdir(parents=True, exist_ok=True)
        # The service alone reads the published notebooks (kernels start in their owner's home).
        try:
            os.chmod(self.service_config.root, 0o700)
        except PermissionError:
            log.warning("cannot make %s private: it belongs to another account", self.service_config.root)
        self.root_dir = str(self.live_root)
        loop = asyncio.get_event_loop()
        loop.call_soon(lambda: asyncio.ensure_future(self.sync_forever()))
        super().start()

    def listen(self):
        # Kernels' connection files: the owner's account must reach its own (see OwnerKernelManager).
        os.chmod(self.connection_dir, 0o711)
        super().listen()


def job_name(session, job_id: int | None) -> str:
    """The name of a dashboard's linked job (notebooks may read it by name or id)."""
    if job_id is None:
        return ""
    job = session.get(Job, job_id)
    return job.name if job is not None else ""


def first_png(notebook) -> bytes | None:
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = (output.get("data") or {}).get("image/png")
            if data:
                try:
                    return b64decode(data if isinstance(data, str) else "".join(data))
                except ValueError:
                    return None
    return None


def voila_config(cfg: ServiceConfig, port: int) -> Config:
    c = Config()
    c.Voila.ip = "127.0.0.1"
    c.Voila.port = port
    c.Voila.port_retries = 0
    c.Voila.open_browser = False
    c.Voila.base_url = PREFIX
    c.Voila.root_dir = str(Path(cfg.root) / "live")
    c.Voila.identity_provider_class = HubIdentityProvider
    c.Voila.authorizer_class = JupyterHubAuthorizer
    # Kernels' connection files go where every account may pass through (the state directory
    # is private); the folder is made 0711 in listen().
    c.Voila.connection_dir_root = tempfile.gettempdir()
    c.VoilaConfiguration.template = "himalia"
    c.VoilaConfiguration.preheat_kernel = True
    c.VoilaConfiguration.default_pool_size = 0
    c.VoilaConfiguration.multi_kernel_manager_class = DashboardKernelManager
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.file_allowlist = []
    c.VoilaConfiguration.page_config_hook = page_config_hook
    c.VoilaKernelManager.fill_delay = cfg.refill_delay
    c.MappingKernelManager.cull_idle_timeout = cfg.kernel_idle_seconds
    c.MappingKernelManager.cull_interval = 60
    c.MappingKernelManager.cull_connected = False
    return c


_app: DashboardsApp | None = None


def page_config_hook(page_config: dict, notebook_path: str | None = None, **kwargs) -> dict:
    """What the page's header shows: the dashboard's title and how fresh its data is."""
    live = None
    if _app is not None and notebook_path:
        live = next((lv for lv in _app.lives.values() if lv.notebook_path == notebook_path), None)
    if live is not None:
        fresh = ({"run_id": live.data_run, "finished_at": live.finished_at.isoformat()}
                 if live.finished_at else None)
        page_config["himalia"] = {"title": live.title, "owner": live.owner, "name": live.name,
                                  "freshness": freshness_text(fresh, datetime.now(timezone.utc)),
                                  "gallery": PREFIX}
    return page_config


def main() -> None:
    global _app
    logging.basicConfig(level=os.environ.get("HIMALIA_LOG_LEVEL", "INFO").upper(),
                        format="[%(asctime)s %(name)s %(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cfg = ServiceConfig(**json.loads(os.environ["HIMALIA_DASHBOARDS_SERVICE"]))
    # Voilà finds the himalia template (an extension of its lab template) on the Jupyter path.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(HERE / "jupyter"),
                                                               os.environ.get("JUPYTER_PATH", "")]))
    os.umask(0o022)
    Path(cfg.root).mkdir(parents=True, exist_ok=True)
    # Voilà's notebook-signing key, in the service's own folder (not the account's home).
    os.environ["JUPYTER_DATA_DIR"] = str(Path(cfg.root) / "jupyter-data")
    from urllib.parse import urlparse

    port = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port
    _app = DashboardsApp(cfg, os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"],
                         config=voila_config(cfg, port))
    _app.initialize([])
    signal.signal(signal.SIGTERM, _app._handle_signal_stop)
    _app.start()


if __name__ == "__main__":
    main()
