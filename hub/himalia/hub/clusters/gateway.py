"""The dask-gateway server as the hub-managed service ``dask-gateway``.

``python -m himalia.hub.services.tied himalia.hub.clusters.gateway`` runs dask-gateway's own
server (JupyterHub authentication, the back end of ``config.gateway_config``) and, in the same
process, its front door on the service's port, where the hub's proxy sends
``/services/dask-gateway/``. The front passes the gateway's REST API through as it is (the
gateway checks the hub token itself) and lets only a cluster's owner through to its dashboard
(``/services/dask-gateway/clusters/<name>/``), by hub token or by the hub's OAuth login in a
browser. Dask clients reach their schedulers at the gateway's TCP proxy
(``runtime.gateway_scheduler_port``).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiohttp import web

from .config import ENV_SETTINGS, PREFIX, SERVICE, GatewaySettings, describe_limits, gateway_config

__all__ = ["SERVICE", "hub_roles", "hub_services", "main"]

#: Seconds the front waits on the gateway or a dashboard.
UPSTREAM_TIMEOUT = 300
COOKIE_MAX_AGE = 30 * 24 * 3600
#: Hop-by-hop headers a proxy must not pass on.
HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


# -- the hub's view -----------------------------------------------------------------------------
def settings_for(cfg, paths, runtime, as_root: bool, python: str) -> GatewaySettings:
    """The gateway's settings for one ``himalia up`` (see :class:`GatewaySettings`)."""
    from .. import userenv
    from ..profiles import DEFAULT_PROFILES, parse_profiles

    profiles = [
        {"name": p.name, "gpus": p.gpus, "env": dict(p.env), "image": p.image,
         "cpu": p.cpu, "memory": p.memory, "default": p.default}
        for p in parse_profiles(cfg.profiles or DEFAULT_PROFILES)
    ]
    default = next((p["name"] for p in profiles if p["default"]), profiles[0]["name"] if profiles else "")
    local = cfg.backend == "local"
    users_python = (str(userenv.user_environment(userenv.overlay_location(paths.root)).python)
                    if local else python)
    return GatewaySettings(
        state_dir=str(paths.root),
        port=runtime.gateway_port,
        scheduler_port=runtime.gateway_scheduler_port,
        scheduler_host=cfg.server_connect_host or "127.0.0.1",
        backend="kubernetes" if cfg.backend == "kubernetes" else "local",
        system_users=bool(cfg.system_users and as_root),
        user_prefix=cfg.system_user_prefix,
        account_registry=str(paths.accounts),
        python=users_python,
        profiles=profiles,
        default_profile=default,
        max_cores=float(cfg.cluster_max_cores or os.cpu_count() or 1),
        max_memory=cfg.cluster_max_memory,
        max_clusters=cfg.cluster_max_clusters,
        max_workers=cfg.cluster_max_workers,
        idle_timeout=float(cfg.cluster_idle_timeout),
        orphan_timeout=float(cfg.cluster_orphan_timeout),
        worker_cores=cfg.cluster_worker_cores,
        worker_memory=cfg.cluster_worker_memory,
        public_url=cfg.resolved_public_url(),
    )


def hub_services(cfg, paths, runtime, as_root: bool, python: str) -> list[dict]:
    """The hub service entry that runs the gateway: root with system users (clusters run as
    their owners), else the platform's service account, never root."""
    from ..hubconfig import BASE_SCOPES, TIED

    if not runtime.gateway_port or not runtime.gateway_scheduler_port:
        return []
    settings = settings_for(cfg, paths, runtime, as_root, python)
    folder = str(settings.folder)
    account = {} if (settings.system_users or not as_root) else {"user": cfg.service_user}
    return [{
        "name": SERVICE,
        "display": False,
        "info": {"description": "Dask clusters (dask-gateway)"},
        "url": f"http://127.0.0.1:{runtime.gateway_port}",
        "command": [python, "-m", TIED, "himalia.hub.clusters.gateway"],
        "environment": {ENV_SETTINGS: settings.to_json()},
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": list(BASE_SCOPES),
        **account,
        **({"cwd": folder} if as_root else {}),
    }]


def hub_roles(cfg) -> list[dict]:
    """The gateway looks people up (their Unix accounts are named after them)."""
    return [{"name": SERVICE, "description": "dask-gateway: checks tokens, finds owners' accounts",
             "scopes": ["read:users"], "services": [SERVICE]}]


# -- the front door -----------------------------------------------------------------------------
def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)


def header_token(request) -> str | None:
    """The hub token of an ``Authorization: token|bearer|jupyterhub <token>`` header."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in {"token", "bearer", "jupyterhub"} and value.strip():
        return value.strip()
    return None


class Front:
    """Authorization in front of the gateway's HTTP proxy (see the module's docstring)."""

    def __init__(self, settings: GatewaySettings, owner_of, upstream: str, cookie_secret: bytes,
                 auth=None):
        from jupyterhub.services.auth import HubOAuth

        self.settings = settings
        #: ``owner_of(cluster_name)``: the hub name owning a live cluster, or None.
        self.owner_of = owner_of
        self.upstream = upstream.rstrip("/")
        self.cookie_secret = cookie_secret
        self.auth = auth or HubOAuth(cache_max_age=10, oauth_redirect_uri=f"{PREFIX}/oauth_callback")
        self.secure = settings.public_url.startswith("https://")
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application()
        self.app.router.add_get(f"{PREFIX}/oauth_callback", self.oauth_callback)
        self.app.router.add_get(f"{PREFIX}/himalia/info", self.info)
        self.app.router.add_route("*", PREFIX + "/clusters/{name}/{tail:.*}", self.dashboard)
        self.app.router.add_route("*", PREFIX + "/clusters/{name}", self.dashboard)
        self.app.router.add_route("*", "/{tail:.*}", self.forward)
        self.app.on_startup.append(self._open)
        self.app.on_cleanup.append(self._close)

    async def _open(self, app) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT),
                                             auto_decompress=False)

    async def _close(self, app) -> None:
        if self.session is not None:
            await self.session.close()

    # -- who is asking --------------------------------------------------------------------------
    def _cookie(self, request, name: str) -> str | None:
        from tornado.web import decode_signed_value

        raw = request.cookies.get(name)
        if not raw:
            return None
        value = decode_signed_value(self.cookie_secret, name, raw, max_age_days=31)
        return value.decode() if value else None

    def _set_cookie(self, response, name: str, value: str, max_age: int) -> None:
        from tornado.web import create_signed_value

        response.set_cookie(name, create_signed_value(self.cookie_secret, name, value).decode(),
                            max_age=max_age, path=PREFIX + "/", httponly=True, samesite="Lax",
                            secure=self.secure)

    async def identity(self, request) -> dict | web.Response:
        """The hub's model of the caller, or the response that sends them to log in."""
        token = header_token(request)
        if token is None:
            token = self._cookie(request, self.auth.cookie_name)
            if token and request.headers.get("Upgrade", "").lower() == "websocket":
                # A page of another origin must not open a dashboard socket with the cookie.
                origin = request.headers.get("Origin", "")
                if origin and origin.split("://", 1)[-1] != request.host:
                    return _error(403, "Cross-origin websocket refused.")
        model = await self.auth.user_for_token(token, sync=False) if token else None
        if model:
            return model
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            state = self.auth.generate_state(next_url=str(request.rel_url))
            response = web.HTTPFound(f"{self.auth.login_url}&state={quote(state)}")
            self._set_cookie(response, self.auth.state_cookie_name, state, 600)
            return response
        return _error(401, "Authentication required: send 'Authorization: token <hub token>'.")

    async def oauth_callback(self, request) -> web.StreamResponse:
        code, state = request.query.get("code", ""), request.query.get("state", "")
        if not code or not state:
            return _error(400, "OAuth callback needs both 'code' and 'state'.")
        expected = self._cookie(request, self.auth.state_cookie_name)
        if not expected or not hmac.compare_digest(expected.encode(), state.encode()):
            return _error(403, "OAuth state mismatch: start the login again.")
        next_url = self.auth.get_next_url(state) or PREFIX + "/"
        self.auth.clear_oauth_state(state)
        token = await self.auth.token_for_code(code, sync=False)
        response = web.HTTPFound(next_url)
        response.del_cookie(self.auth.state_cookie_name, path=PREFIX + "/")
        self._set_cookie(response, self.auth.cookie_name, token, COOKIE_MAX_AGE)
        return response

    # -- routes ---------------------------------------------------------------------------------
    async def info(self, request) -> web.Response:
        who = await self.identity(request)
        if isinstance(who, web.StreamResponse):
            return who
        s = self.settings
        return web.json_response({
            "scheduler_address": f"gateway://{s.scheduler_host}:{s.scheduler_port}",
            "profiles": [p["name"] for p in s.profiles],
            "default_profile": s.default_profile,
            "limits": {"cores": s.max_cores, "memory": s.max_memory, "clusters": s.max_clusters,
                       "workers": s.max_workers, "text": describe_limits(s)},
            "worker": {"cores": s.worker_cores, "memory": s.worker_memory},
            "idle_timeout": s.idle_timeout,
        })

    async def dashboard(self, request) -> web.StreamResponse:
        """A cluster's dashboard, for its owner only; anyone else learns nothing (404)."""
        who = await self.identity(request)
        if isinstance(who, web.StreamResponse):
            return who
        name = request.match_info["name"]
        if self.owner_of(name) != who.get("name") or who.get("kind", "user") != "user":
            return _error(404, f"No cluster {name} of yours.")
        return await self.forward(request)

    async def forward(self, request) -> web.StreamResponse:
        url = self.upstream + str(request.rel_url)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, headers)
        try:
            async with self.session.request(request.method, url, headers=headers,
                                            data=request.content if request.body_exists else None,
                                            allow_redirects=False) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        response.headers.add(key, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return _error(502, f"The dask-gateway server is not answering ({type(e).__name__}).")

    async def _websocket(self, request, url: str, headers: dict) -> web.StreamResponse:
        for key in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
            headers.pop(key, None)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers.pop("Sec-WebSocket-Protocol", None)
        try:
            upstream = await self.session.ws_connect(url.replace("http", "ws", 1), headers=headers,
                                                     protocols=protocols, max_msg_size=0)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return _error(502, f"The dashboard is not answering ({type(e).__name__}).")
        client = web.WebSocketResponse(protocols=protocols, max_msg_size=0)
        await client.prepare(request)

        async def pump(source, sink) -> None:
            async for msg in source:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                else:
                    break

        try:
            await asyncio.wait([asyncio.ensure_future(pump(client, upstream)),
                                asyncio.ensure_future(pump(upstream, client))],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            await upstream.close()
            await client.close()
        return client


# -- the process ---------------------------------------------------------------------------------
def cookie_secret(folder: Path) -> bytes:
    from ..config import write_private

    path = folder / "cookie_secret"
    if not path.exists():
        write_private(path, secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def main() -> int:
    from dask_gateway_server.app import DaskGateway

    from ..cli.common import free_port

    settings = GatewaySettings.from_json(os.environ[ENV_SETTINGS])
    settings.api_port = settings.api_port or free_port()
    settings.proxy_port = settings.proxy_port or free_port()
    settings.folder.mkdir(parents=True, exist_ok=True)
    secret = cookie_secret(settings.folder)

    class HimaliaGateway(DaskGateway):
        """dask-gateway's server with himalia's front door in the same event loop."""

        async def setup(self):
            await super().setup()
            db = getattr(self.backend, "db", None)

            def owner_of(name: str) -> str | None:
                cluster = db.get_cluster(name) if db is not None else None
                return cluster.username if cluster is not None and cluster.is_active() else None

            front = Front(settings, owner_of, f"http://127.0.0.1:{settings.proxy_port}", secret)
            self.front_runner = web.AppRunner(front.app, access_log=None)
            await self.front_runner.setup()
            await web.TCPSite(self.front_runner, "127.0.0.1", settings.port).start()
            self.log.info("himalia front door at http://127.0.0.1:%d%s/", settings.port, PREFIX)

        async def cleanup(self):
            if hasattr(self, "front_runner"):
                await self.front_runner.cleanup()
            await super().cleanup()

    app = HimaliaGateway(config=gateway_config(settings))
    app.config_file = str(settings.folder / "no-config-file.py")
    app.initialize([])
    app.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
