"""The Deployments panel's side of the user's server: model deployments, through the platform
API with the server's own token.

Routes, under the server's base URL; every verb is authenticated by Jupyter Server. A deployment
is named by its name, a DNS label (``^[a-z][a-z0-9-]{0,62}$``):

``GET /himalia/deployments?offset=<n>&limit=<n>``
    ``{"deployments": [deployment...]}``: the user's, those shared with them (an admin's: all).
``POST /himalia/deployments``
    ``{"name", "model_uri", "canary_percent", "replicas", ...}`` -> 202
    ``{"deployment", "version"}``: a new deployment, or a new version of one of the user's.
    The fields are the platform's and it checks them.
``GET | DELETE /himalia/deployments/<name>``
    One deployment with its versions, newest first; DELETE undeploys it (204).
``POST /himalia/deployments/<name>/promote``, ``POST .../rollback``
    The canary gets all the traffic; or it is retired (the previous version brought back).
``GET /himalia/deployments/<name>/metrics?minutes=<n>``
    ``{"buckets": [{"at", "version", "count", "errors", "p50_ms", "p95_ms"}...], "totals"}``.
``GET /himalia/deployments/<name>/logs?version=<n>&lines=<n>``
    A version's build log, then its serve log, as text (the newest version by default).
``GET | POST /himalia/deployments/<name>/keys``, ``DELETE .../keys/<id>``
    The deployment's API keys by prefix; POST ``{"label"}`` -> 201 with the full ``key``,
    which is shown this once; DELETE revokes one (204).

Errors are ``{"status", "message"}``: the platform's own status and message (422 naming the bad
field, 404 for a deployment that is not yours, 409 when there is no canary to promote, ...), 400
for a malformed name or number here, and 503 when the platform API is not configured or cannot
be reached.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import tornado.web
from himalia.sdk import HimaliaError
from jupyter_server.auth.decorator import authorized

from .platform import PanelError, PlatformHandler, body_fields, platform_error

#: What the platform accepts as a deployment's name: a DNS label.
DEPLOYMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def deployment_path(name: str, *rest: str) -> str:
    """The platform API's path of deployment ``name`` (and of ``rest`` below it); a name that
    cannot be a deployment's is a 400 here, before anything is sent."""
    if not DEPLOYMENT_NAME.fullmatch(name):
        raise PanelError(400, f"name: {name!r} is not a deployment name (a lowercase letter, then "
                             "lowercase letters, digits and '-', 63 at most).")
    return "/".join(("deployments", name, *rest))


class DeploymentsHandler(PlatformHandler):
    """Base of the ``/himalia/deployments*`` handlers, over the platform client's ``arequest``."""

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The platform's JSON answer to ``method path``; its refusal as a :class:`PanelError`."""
        try:
            client = self.himalia.platform_client()
            return await client.arequest(method, path, **kwargs)
        except HimaliaError as e:
            raise platform_error(e) from None

    def whole_numbers(self, *keys: str) -> dict[str, int]:
        """The query arguments ``keys`` that were given, as whole numbers; 400 for another."""
        numbers = {}
        for key in keys:
            value = self.get_query_argument(key, "")
            if value and not value.isdigit():
                raise PanelError(400, f"{key}: must be a whole number.")
            if value:
                numbers[key] = int(value)
        return numbers


class DeploymentListHandler(DeploymentsHandler):
    """``GET /himalia/deployments``: the user's deployments; ``POST``: deploy a model."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            paging = self.whole_numbers("offset", "limit")
            return await self.call("GET", "deployments", params=paging or None)

        await self.answer(work)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        async def work() -> dict:
            return await self.call("POST", "deployments", json=body_fields(self))

        await self.answer(work, 202)


class DeploymentHandler(DeploymentsHandler):
    """``GET | DELETE /himalia/deployments/<name>``."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.answer(lambda: self.call("GET", deployment_path(name)))

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.answer(lambda: self.call("DELETE", deployment_path(name)), 204)


class PromoteHandler(DeploymentsHandler):
    """``POST /himalia/deployments/<name>/promote``: the canary takes all the traffic."""

    @tornado.web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        await self.answer(lambda: self.call("POST", deployment_path(name, "promote")))


class RollbackHandler(DeploymentsHandler):
    """``POST /himalia/deployments/<name>/rollback``: the canary is retired, or the previous
    version brought back."""

    @tornado.web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        await self.answer(lambda: self.call("POST", deployment_path(name, "rollback")))


class MetricsHandler(DeploymentsHandler):
    """``GET /himalia/deployments/<name>/metrics?minutes=<n>``: requests and latency by minute
    and version."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        async def work() -> dict:
            window = self.whole_numbers("minutes")
            return await self.call("GET", deployment_path(name, "metrics"), params=window or None)

        await self.answer(work)


class LogsHandler(DeploymentsHandler):
    """``GET /himalia/deployments/<name>/logs?version=<n>&lines=<n>``: a version's logs, as text."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        try:
            params = self.whole_numbers("version", "lines")
            path = deployment_path(name, "logs")
            # The answer is text, not JSON: read through the client's raw response.
            client = self.himalia.platform_client()
            response = await asyncio.to_thread(client.raw, "GET", path, params=params or None)
        except HimaliaError as e:
            self.fail(platform_error(e))
            return
        except PanelError as e:
            self.fail(e)
            return
        self.finish(response.text, set_content_type="text/plain; charset=utf-8")


class KeysHandler(DeploymentsHandler):
    """``GET /himalia/deployments/<name>/keys``: the API keys, by prefix; ``POST {"label"}``:
    a new key, whole this once."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.answer(lambda: self.call("GET", deployment_path(name, "keys")))

    @tornado.web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        async def work() -> dict:
            return await self.call("POST", deployment_path(name, "keys"), json=body_fields(self))

        await self.answer(work, 201)


class KeyHandler(DeploymentsHandler):
    """``DELETE /himalia/deployments/<name>/keys/<id>``: revoke a key."""

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str, key: str) -> None:
        await self.answer(lambda: self.call("DELETE", deployment_path(name, "keys", key)), 204)


#: The deployments routes, for ``HimaliaExtensionApp.initialize_handlers``. Names are matched
#: loosely so that a malformed one is answered as JSON (400) rather than by the server's 404 page.
HANDLERS = [
    (r"/himalia/deployments", DeploymentListHandler),
    (r"/himalia/deployments/([^/]+)", DeploymentHandler),
    (r"/himalia/deployments/([^/]+)/promote", PromoteHandler),
    (r"/himalia/deployments/([^/]+)/rollback", RollbackHandler),
    (r"/himalia/deployments/([^/]+)/metrics", MetricsHandler),
    (r"/himalia/deployments/([^/]+)/logs", LogsHandler),
    (r"/himalia/deployments/([^/]+)/keys", KeysHandler),
    (r"/himalia/deployments/([^/]+)/keys/(\d+)", KeyHandler),
]
