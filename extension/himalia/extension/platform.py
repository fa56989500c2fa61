"""What the panels' handlers share: they call the platform API with the server's own token,
answer JSON and turn every failure into ``{"status", "message"}`` for the panel to show."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from himalia.sdk import HimaliaError
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

if TYPE_CHECKING:
    from .app import HimaliaExtensionApp


class PanelError(Exception):
    """A failure the panel shows as is: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


#: The SDK prefixes the platform's message with the request's path ("/services/.../jobs: ").
_SDK_PREFIX = re.compile(r"^/\S*: ")


def platform_error(error: HimaliaError) -> PanelError:
    """The platform's refusal as this server answers it: the same status and the platform's
    own message; 503 when no answer came back at all."""
    message = _SDK_PREFIX.sub("", str(error), count=1)
    return PanelError(error.status or 503, message)


def body_fields(handler: APIHandler) -> dict:
    """The request's JSON object, or a 400."""
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        raise PanelError(400, "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise PanelError(400, "The request body must be a JSON object.")
    return body


class PlatformHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the panels' handlers: answers JSON, errors as ``{status, message}``."""

    auth_resource = "himalia"

    @property
    def himalia(self) -> HimaliaExtensionApp:
        """The extension app this handler belongs to."""
        return cast("HimaliaExtensionApp", self.extensionapp)

    async def answer(self, work: Callable[[], Awaitable[Any]], status: int = 200) -> None:
        """Finish with ``work``'s JSON result (``status``), or with its error as JSON."""
        try:
            result = await work()
        except PanelError as e:
            self.fail(e)
            return
        self.set_status(status)
        if status == 204:
            self.finish()
        else:
            self.finish(json.dumps(result))

    def fail(self, error: PanelError) -> None:
        """Finish with ``error`` as ``{"status", "message"}``."""
        self.log.info("himalia %s %s: %s %s", self.request.method, self.request.path,
                      error.status, error.message)
        self.set_status(error.status)
        self.finish(json.dumps({"status": error.status, "message": error.message}))
