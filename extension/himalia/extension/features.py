"""The Features panel's side of the user's server: the feature catalog, through the platform API
(:class:`himalia.sdk.features.Features`) with the server's own token.

Routes, under the server's base URL; every verb is authenticated by Jupyter Server. A feature
view is named as in Feast's registry: a letter or ``_``, then letters, digits and ``_``:

``GET /himalia/features?q=<words>``
    ``{"views": [view...], "entities": [entity...], "registry_version"}``: the catalog, or with
    ``q`` the views (and entities) that match every word, best match first.
``GET /himalia/features/views/<name>``
    One view with its per-feature ``statistics`` (histograms of numbers included), its
    ``freshness``, ``materializations`` (newest first) and ``versions``.

Errors are ``{"status", "message"}``: the platform's own status and message (403 for someone
who is not a scientist, 404 naming close matches for an unknown view, ...), 400 for a name that
cannot be a view's, and 503 when the platform API is not configured or cannot be reached.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TypeVar

import tornado.web
from himalia.sdk import HimaliaError
from himalia.sdk.features import Features
from jupyter_server.auth.decorator import authorized

from .platform import PanelError, PlatformHandler, platform_error

T = TypeVar("T")

#: What the platform accepts as a feature view's name.
VIEW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def view_name(name: str) -> str:
    """``name`` when it can be a feature view's; a 400 here otherwise, before anything is sent."""
    if not VIEW_NAME.fullmatch(name):
        raise PanelError(400, f"name: {name!r} is not a feature view name (a letter or '_', then "
                              "letters, digits and '_', 128 at most).")
    return name


class FeaturesHandler(PlatformHandler):
    """Base of the ``/himalia/features*`` handlers."""

    async def catalog_call(self, call: Callable[[Features], T]) -> T:
        """Run ``call`` with the SDK's (blocking) feature store client in a thread; the
        platform's refusal as a :class:`PanelError`."""
        try:
            features = Features(self.himalia.platform_client())
            return await asyncio.to_thread(call, features)
        except HimaliaError as e:
            raise platform_error(e) from None


class CatalogHandler(FeaturesHandler):
    """``GET /himalia/features?q=<words>``: feature views and entities."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        words = self.get_query_argument("q", "").strip()
        await self.answer(lambda: self.catalog_call(lambda f: f.catalog(words)))


class ViewHandler(FeaturesHandler):
    """``GET /himalia/features/views/<name>``: one view with statistics and history."""

    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        async def work() -> dict:
            view = view_name(name)
            return await self.catalog_call(lambda f: f.describe(view))

        await self.answer(work)


#: The features routes, for ``HimaliaExtensionApp.initialize_handlers``. Names are matched
#: loosely so that a malformed one is answered as JSON (400) rather than by the server's 404 page.
HANDLERS = [
    (r"/himalia/features", CatalogHandler),
    (r"/himalia/features/views/([^/]+)", ViewHandler),
]
