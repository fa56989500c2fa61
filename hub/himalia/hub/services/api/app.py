"""FastAPI application of the platform API."""

from __future__ import annotations

import asyncio
import hmac
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from jupyterhub.services.auth import HubOAuth
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..._version import __version__
from ...errors import PlatformError
from ...storage import Database
from . import guide
from .authz import ADMIN, allow, has_role, unprotected_routes
from .health import check_health, health_summary
from .identity import (
    COOKIE_MAX_AGE_DAYS,
    BrowserLogin,
    Identity,
    read_signed_cookie,
    sign_cookie,
)

if TYPE_CHECKING:
    from ...deployments.api import DeploymentsSettings
    from ...features.repo import FeatureSettings
    from ...jobs.api import JobsSettings
    from ...labels.service import LabelSettings
    from ...dashboards.service import DashboardSettings

#: On every response but /docs: a page opened by another user's JupyterLab (same origin, via
#: ``window.open``) gets an opaque origin, so its opener cannot read it; and no framing.
API_CSP = "sandbox; frame-ancestors 'none'"
#: /docs runs Swagger UI's scripts and shows no user data, so it is not sandboxed; it loads
#: everything from the API itself (the browser refuses any other host) and is never framed.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
OAUTH_STATE_MAX_AGE = 600
#: Swagger UI's files, served by the API (no CDN): name -> media type.
DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}


def docs_assets_dir() -> Path:
    """The folder of Swagger UI's files, from the ``fastapi-offline`` package."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError as e:
        raise RuntimeError(
            "The platform API's docs need Swagger UI's files from the fastapi-offline "
            "package: pip install fastapi-offline"
        ) from e
    return Path(str(folder))


@dataclass
class APISettings:
    """What the API needs to know; read from the environment by ``__main__`` only."""

    prefix: str
    hub_api_url: str
    api_token: str
    proxy_url: str
    db_url: str
    #: Signs the browser's cookie (and keys its XSRF token); the API refuses to start without.
    cookie_secret: bytes
    #: The platform's public URL; ``https://...`` makes cookies ``Secure``. "" when unknown.
    public_url: str = ""
    oauth_client_id: str = ""
    oauth_redirect_uri: str = ""
    #: How long the hub's answer about a token is trusted; a revoked token works this long.
    token_cache_seconds: int = 10
    #: Scheduled jobs' files and runner; None leaves the jobs routes out.
    jobs: "JobsSettings | None" = None
    #: Model deployments' files and manager; None leaves the deployments routes out.
    deployments: "DeploymentsSettings | None" = None
    #: The feature store's repository; None leaves the features routes out.
    features: "FeatureSettings | None" = None
    #: Labeling; None leaves the label sets' routes and page out.
    labels: "LabelSettings | None" = None
    #: Dashboards; None leaves their routes out.
    dashboards: "DashboardSettings | None" = None


class SecurityHeaders:
    """Adds the CSP, ``nosniff`` and referrer headers to every response (errors included)."""

    def __init__(self, app: ASGIApp, *, docs_path: str, pages: dict[str, str] | None = None):
        self.app = app
        self.docs_path = docs_path
        #: Path prefixes of pages that run their own scripts -> their CSP (the labeling page).
        self.pages = pages or {}

    def csp(self, path: str) -> str:
        if path == self.docs_path:
            return DOCS_CSP
        return next((csp for page, csp in self.pages.items() if path.startswith(page)), API_CSP)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status, headers=headers)


def create_app(settings: APISettings) -> FastAPI:
    """Build the app; routes live under the service prefix the proxy forwards unchanged."""
    if not settings.cookie_secret:
        raise ValueError("APISettings.cookie_secret is empty: browser cookies cannot be signed.")
    prefix = "/" + settings.prefix.strip("/")
    cookie_path = prefix + "/"
    secure = settings.public_url.startswith("https://")
    auth = HubOAuth(
        api_url=settings.hub_api_url,
        api_token=settings.api_token,
        oauth_client_id=settings.oauth_client_id or "service-himalia",
        oauth_redirect_uri=settings.oauth_redirect_uri or f"{prefix}/oauth_callback",
        base_url=cookie_path,
        cache_max_age=settings.token_cache_seconds,
    )
    db = Database(settings.db_url)

    def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, sign_cookie(settings.cookie_secret, name, value), max_age=max_age,
            path=cookie_path, httponly=True, samesite="lax", secure=secure,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.http = httpx.AsyncClient()
        repo = getattr(app.state, "features_repo", None)
        warming = None
        if repo is not None:
            from ...features.api import warm

            warming = asyncio.create_task(warm(repo))
        yield
        if warming is not None:
            await warming
            repo.close()
        await app.state.http.aclose()
        db.close()

    # FastAPI's own /docs and /openapi.json would be public: ours below go through authz.
    app = FastAPI(
        title="himalia platform API",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.openapi_url = f"{prefix}/openapi.json"
    app.docs_url = f"{prefix}/docs"
    app.state.settings = settings
    app.state.db = db
    app.state.auth = auth
    pages = {}
    if settings.labels is not None:
        from ...labels.api import PAGE_CSP

        pages[f"{prefix}/label/"] = PAGE_CSP
    app.add_middleware(SecurityHeaders, docs_path=app.docs_url, pages=pages)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        # Starlette's own 404 and 405 (unknown route, wrong method) say only "Not Found".
        if exc.status_code == 404 and message == HTTPStatus.NOT_FOUND.phrase:
            message = f"No such route: {where}. The routes are listed at {app.docs_url}."
        elif exc.status_code == 405 and message == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}."
        return _error(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, f"Invalid request: {problems}")

    @app.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError):
        # A capability's rules refused the request (deployments, jobs): its status and message.
        return _error(exc.status, str(exc))

    @app.exception_handler(BrowserLogin)
    async def browser_login(request: Request, exc: BrowserLogin):
        response = RedirectResponse(exc.location, status_code=302)
        set_cookie(response, exc.cookie_name, exc.state, OAUTH_STATE_MAX_AGE)
        return response

    async def list_services() -> dict:
        response = await app.state.http.get(
            settings.hub_api_url.rstrip("/") + "/services",
            headers={"Authorization": f"token {settings.api_token}"},
            timeout=5,
        )
        response.raise_for_status()
        return response.json()

    # Every route of this router needs a platform role; stricter routes add allow(<role>).
    router = APIRouter(prefix=prefix, dependencies=[Depends(allow())])

    @router.get("/api/v1/whoami", summary="The caller's name, platform roles and hub scopes")
    async def whoami(who: Identity = Depends(allow())) -> dict:
        return who.as_json()

    @router.get(
        "/api/v1/health",
        summary="Health of hub, proxy, database and services",
        description="Admins also get a `detail` string per part; other roles only `ok`.",
    )
    async def health(who: Identity = Depends(allow())) -> dict:
        report = await check_health(
            app.state.http,
            hub_api_url=settings.hub_api_url,
            proxy_url=settings.proxy_url,
            db=db,
            list_services=list_services,
        )
        return report if has_role(who, ADMIN) else health_summary(report)

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    assets = docs_assets_dir()
    missing = [name for name in DOCS_ASSETS if not (assets / name).is_file()]
    if missing:
        raise RuntimeError(f"Swagger UI files missing from {assets}: {', '.join(missing)}")
    assets_url = f"{prefix}/static/docs"

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # The spec is inlined (and Swagger UI's url left empty) so the page fetches nothing
        # with the cookie: such a fetch would need the XSRF token, which a page other users'
        # JupyterLab can open must not hold. "Try it out" works with a token via "Authorize".
        # Swagger UI comes from the API itself; no validator badge (an outside service).
        return get_swagger_ui_html(
            openapi_url="",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets_url}/swagger-ui.css",
            swagger_favicon_url=f"{assets_url}/favicon.png",
            swagger_ui_parameters={"spec": app.openapi(), "validatorUrl": None},
        )

    # Swagger UI's files are public, but they go through authz like every route: only the
    # docs page, which needs a login, loads them (same-origin loads carry the cookie).
    def docs_asset(name: str, media_type: str):
        async def asset() -> FileResponse:
            return FileResponse(assets / name, media_type=media_type,
                                headers={"Cache-Control": "private, max-age=86400"})

        asset.__name__ = "docs_asset_" + name.replace("-", "_").replace(".", "_")
        return asset

    for name, media_type in DOCS_ASSETS.items():
        router.add_api_route(f"/static/docs/{name}", docs_asset(name, media_type),
                             methods=["GET"], include_in_schema=False)

    @router.get("/", include_in_schema=False)
    async def index(who: Identity = Depends(allow())):
        return {"service": "himalia", "version": __version__, "user": who.name,
                "openapi": app.openapi_url}

    # authz.PUBLIC_ROUTES: only the OAuth callback, which a browser reaches before it has a cookie.
    public = APIRouter(prefix=prefix)

    @public.get("/oauth_callback", include_in_schema=False)
    async def oauth_callback(request: Request, code: str = "", state: str = ""):
        if not code or not state:
            raise HTTPException(400, "OAuth callback needs both 'code' and 'state'.")
        name = auth.state_cookie_name
        expected = read_signed_cookie(settings.cookie_secret, name, request.cookies.get(name))
        if not expected or not hmac.compare_digest(expected.encode(), state.encode()):
            raise HTTPException(403, "OAuth state mismatch: start the login again.")
        next_url = auth.get_next_url(state)
        auth.clear_oauth_state(state)
        token = await auth.token_for_code(code, sync=False)
        response = RedirectResponse(next_url, status_code=302)
        response.delete_cookie(name, path=cookie_path, secure=secure, httponly=True, samesite="lax")
        set_cookie(response, auth.cookie_name, token, COOKIE_MAX_AGE_DAYS * 24 * 3600)
        return response

    app.include_router(router)
    if settings.jobs is not None:
        from ...jobs.api import make_router as jobs_router

        app.include_router(jobs_router(prefix, db, settings.jobs))
    features_repo = None
    if settings.features is not None:
        from ...features.api import make_router as features_router

        features = features_router(prefix, db, settings.features)
        features_repo = app.state.features_repo = features.features_repo
        app.include_router(features)
    if settings.deployments is not None:
        from ...deployments.api import make_router as deployments_router

        app.include_router(deployments_router(prefix, db, settings.deployments, features_repo))
    if settings.labels is not None:
        from ...labels import api as labels_api

        app.include_router(labels_api.make_router(
            prefix, db, settings.labels, labels_api.GroupMembers(settings.hub_api_url, settings.api_token),
            settings.cookie_secret, auth.cookie_name))
        app.include_router(labels_api.asset_router(prefix))
    if settings.dashboards is not None:
        from ...dashboards.api import make_router as dashboards_router

        app.include_router(dashboards_router(prefix, db, settings.dashboards))
    app.include_router(guide.make_router(prefix, guide.find_docs()))
    app.include_router(public)
    unprotected = unprotected_routes(app, prefix)
    if unprotected:
        raise RuntimeError(f"Routes without authorization (see authz.PUBLIC_ROUTES): {unprotected}")
    return app
