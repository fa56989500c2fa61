"""REST handlers of the himalia server extension."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, cast

import tornado.web
from himalia.sdk import HimaliaError
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

if TYPE_CHECKING:
    from .app import HimaliaExtensionApp


class StatusHandler(ExtensionHandlerMixin, APIHandler):
    """``GET /himalia/api/status``: the caller's identity and the platform's health.

    Replies ``{"whoami": {...}, "health": {...}}``, or 503 with ``{"message": ...}`` when the
    platform API is not configured for this server or cannot be reached.
    """

    auth_resource = "himalia"

    @property
    def himalia(self) -> HimaliaExtensionApp:
        """The extension app this handler belongs to."""
        return cast("HimaliaExtensionApp", self.extensionapp)

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        """Ask the platform API, concurrently, who the user is and how healthy it is."""
        timeout = self.himalia.request_timeout
        try:
            client = self.himalia.platform_client()
            whoami, health = await asyncio.wait_for(
                asyncio.gather(client.awhoami(), client.ahealth()), timeout=timeout
            )
        except HimaliaError as e:
            self._unavailable(str(e))
            return
        except TimeoutError:
            self._unavailable(f"The himalia platform API did not answer within {timeout:g} s.")
            return
        self.finish(json.dumps({"whoami": whoami, "health": health}))

    def _unavailable(self, message: str) -> None:
        self.log.warning("himalia status unavailable: %s", message)
        self.set_status(503)
        self.finish(json.dumps({"message": message}))
