"""The Labels panel's and the labeling widget's side of the user's server: the platform's label
sets, through its API with the server's own token.

``GET | POST | PUT | PATCH | DELETE /himalia/labels/api/<path>``
    Forwarded to ``<HIMALIA_API_URL>api/v1/labelsets/<path>`` (an empty ``<path>``:
    ``api/v1/labelsets``) with the query string and the request's body; the platform's status,
    content type and body come back as they are: JSON, an item's image bytes, 204 with no body,
    and the platform's errors ``{"status", "message"}`` with their status.

Every verb is authenticated by Jupyter Server (the ``_xsrf`` check included for callers with its
cookie). ``<path>`` is made of label set ids, names and item ids (percent-encoded as needed) and
the API's words (``items``, ``image``, ``next``...): an empty, ``.`` or ``..`` segment, or one
holding an (encoded) slash or a control character, is refused with 400 and nothing is sent. The
server's own ``token`` and ``_xsrf`` query arguments are not passed on. 503 when the platform API
is not configured, cannot be reached or does not answer in time.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode

import httpx
import tornado.web
from himalia.sdk import HimaliaError
from jupyter_server.auth.decorator import authorized

from .platform import PanelError, PlatformHandler, platform_error

ROUTE = "/himalia/labels/api/"
#: Query arguments that are this server's (its token, its XSRF check), not the platform's.
SERVER_ARGUMENTS = {"token", "_xsrf"}
#: Response headers passed back besides the status and body.
PASSED_HEADERS = ("Content-Disposition", "Cache-Control")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def platform_path(raw: str) -> str:
    """``raw`` (the request's path after ``/himalia/labels/api/``, still percent-encoded) as the
    path under ``api/v1/labelsets``, each segment re-encoded; a 400 for one that could leave it."""
    if not raw:
        return "labelsets"
    segments = []
    for segment in raw.split("/"):
        name = unquote(segment)
        if name in ("", ".", "..") or _UNSAFE.search(name):
            raise PanelError(400, f"path: {raw!r} is not a label set's path (segments are ids, "
                                  "names and words of the API; no empty, '.' or '..' segment, "
                                  "no encoded slash).")
        segments.append(quote(name, safe=""))
    return "labelsets/" + "/".join(segments)


def platform_query(query: str) -> str:
    """The query string without this server's own arguments."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k not in SERVER_ARGUMENTS])


class LabelsProxyHandler(PlatformHandler):
    """``/himalia/labels/api/<path>``: the platform's ``api/v1/labelsets/<path>``, passed
    through with the server's token."""

    @tornado.web.authenticated
    @authorized
    async def get(self, _path: str) -> None:
        await self.forward()

    # Every verb is the same pass-through, authenticated and authorized alike.
    post = put = patch = delete = get

    async def forward(self) -> None:
        """Send the request on and finish with the platform's answer as it came."""
        try:
            # The raw path: Tornado's path argument has %2F already decoded into a slash.
            path = platform_path(self.request.path.split(ROUTE, 1)[1])
            response = await self._send(path)
        except PanelError as e:
            self.fail(e)
            return
        self.set_status(response.status_code)
        for name in PASSED_HEADERS:
            if name in response.headers:
                self.set_header(name, response.headers[name])
        if response.status_code in (204, 304):
            self.finish()
            return
        kind = response.headers.get("Content-Type", "application/octet-stream")
        self.finish(response.content, set_content_type=kind)

    async def _send(self, path: str) -> httpx.Response:
        timeout = self.himalia.request_timeout
        try:
            client = self.himalia.platform_client()
        except HimaliaError as e:
            raise platform_error(e) from None
        query = platform_query(self.request.query)
        url = f"{client.api_url}api/v1/{path}" + (f"?{query}" if query else "")
        headers = client.headers
        body = self.request.body or None
        if body is not None:
            headers["Content-Type"] = self.request.headers.get("Content-Type", "application/json")
        try:
            return await self.himalia.http_client().request(
                self.request.method or "GET", url, headers=headers, content=body, timeout=timeout)
        except httpx.TimeoutException:
            raise PanelError(503, f"The himalia platform API did not answer within {timeout:g} s."
                             ) from None
        except httpx.HTTPError as e:
            raise PanelError(503, f"Cannot reach the platform API at {client.api_url}: {e}"
                             ) from None


#: The labels routes, for ``HimaliaExtensionApp.initialize_handlers``.
HANDLERS = [
    (r"/himalia/labels/api/(.*)", LabelsProxyHandler),
]
