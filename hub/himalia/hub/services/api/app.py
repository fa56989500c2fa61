"""FastAPI application of the platform API."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from jupyterhub.services.auth import HubOAuth

from ..._version import __version__
from ...storage import Database
from .health import check_health
from .identity import BrowserLogin, Identity, resolve_identity


@dataclass
class APISettings:
    """What the API needs to know; read from the environment by ``__main__`` only."""

    prefix: str
    hub_api_url: str
    api_token: str
    proxy_url: str
    db_url: str
    oauth_client_id: str = ""
    oauth_redirect_uri: str = ""
    #: How long the hub's answer about a token is trusted; a revoked token works this long.
    token_cache_seconds: int = 10


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


def create_app(settings: APISettings) -> FastAPI:
    """Build the app; routes live under the service prefix the proxy forwards unchanged."""
    prefix = "/" + settings.prefix.strip("/")
    auth = HubOAuth(
        api_url=settings.hub_api_url,
        api_token=settings.api_token,
        oauth_client_id=settings.oauth_client_id or "service-himalia",
        oauth_redirect_uri=settings.oauth_redirect_uri or f"{prefix}/oauth_callback",
        base_url=prefix + "/",
        cache_max_age=settings.token_cache_seconds,
    )
    db = Database(settings.db_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.http = httpx.AsyncClient()
        yield
        await app.state.http.aclose()
        db.close()

    app = FastAPI(
        title="himalia platform API",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.auth = auth

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, f"Invalid request: {problems}")

    @app.exception_handler(BrowserLogin)
    async def browser_login(request: Request, exc: BrowserLogin):
        response = RedirectResponse(exc.location, status_code=302)
        response.set_cookie(
            exc.cookie_name, exc.state, max_age=600, path=prefix + "/", httponly=True,
            samesite="lax",
        )
        return response

    async def identity(request: Request) -> Identity:
        return await resolve_identity(request, auth)

    async def list_services() -> dict:
        response = await app.state.http.get(
            settings.hub_api_url.rstrip("/") + "/services",
            headers={"Authorization": f"token {settings.api_token}"},
            timeout=5,
        )
        response.raise_for_status()
        return response.json()

    router = APIRouter(prefix=prefix)

    @router.get("/api/v1/whoami", summary="The caller's name, platform roles and hub scopes")
    async def whoami(who: Identity = Depends(identity)) -> dict:
        return who.as_json()

    @router.get("/api/v1/health", summary="Health of hub, proxy, database and services")
    async def health(who: Identity = Depends(identity)) -> dict:
        return await check_health(
            app.state.http,
            hub_api_url=settings.hub_api_url,
            proxy_url=settings.proxy_url,
            db=db,
            list_services=list_services,
        )

    @router.get("/oauth_callback", include_in_schema=False)
    async def oauth_callback(request: Request, code: str = "", state: str = ""):
        if not code or not state:
            raise HTTPException(400, "OAuth callback needs both 'code' and 'state'.")
        if request.cookies.get(auth.state_cookie_name) != state:
            raise HTTPException(403, "OAuth state mismatch: start the login again.")
        next_url = auth.get_next_url(state) or prefix + "/api/v1/whoami"
        auth.clear_oauth_state(state)
        token = await auth.token_for_code(code, sync=False)
        response = RedirectResponse(next_url, status_code=302)
        response.delete_cookie(auth.state_cookie_name, path=prefix + "/")
        response.set_cookie(
            auth.cookie_name, token, path=prefix + "/", httponly=True, samesite="lax"
        )
        return response

    @router.get("/", include_in_schema=False)
    async def index(who: Identity = Depends(identity)):
        return {"service": "himalia", "version": __version__, "user": who.name,
                "openapi": f"{prefix}/openapi.json"}

    app.include_router(router)
    return app
