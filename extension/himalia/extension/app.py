"""The himalia server extension: the single-user server's side of the JupyterLab panels."""

from __future__ import annotations

from typing import Any

from himalia.sdk import Client
from jupyter_server.extension.application import ExtensionApp
from traitlets import Callable, Float

from .clusters import HANDLERS as CLUSTERS_HANDLERS
from .dashboards import HANDLERS as DASHBOARDS_HANDLERS
from .deployments import HANDLERS as DEPLOYMENTS_HANDLERS
from .features import HANDLERS as FEATURES_HANDLERS
from .handlers import StatusHandler
from .jobs import HANDLERS as JOBS_HANDLERS
from .kernel_exits import KernelExitsHandler, KernelExitWatcher
from .labels import HANDLERS as LABELS_HANDLERS
from .tracking import HANDLERS as TRACKING_HANDLERS
from .tracking import RunReader


class HimaliaExtensionApp(ExtensionApp):
    """Serves ``/himalia/api/*``, ``/himalia/tracking/*``, ``/himalia/jobs*`` and
    ``/himalia/kernel-exits``: the himalia JupyterLab extension's REST API."""

    name = "himalia"
    description = "himalia: identity, roles, platform health and runs for JupyterLab."
    load_other_extensions = True
    classes = [*ExtensionApp.classes, RunReader]

    client_factory = Callable(
        Client.from_env,
        help="""Make the client of the himalia platform API.

        Called with no arguments; returns an object with the coroutine methods
        ``awhoami() -> {"name", "roles", "scopes"}`` and
        ``ahealth() -> {"ok", "services": {name: {"ok", "detail"}}}``, and, for the Jobs
        panel, ``himalia.sdk.Client``'s ``request`` and ``raw`` (``himalia.sdk.Jobs`` calls them).
        It and those methods raise ``himalia.sdk.HimaliaError`` when the platform API is not
        configured or cannot be reached. The default, ``himalia.sdk.Client.from_env``, reads
        ``HIMALIA_API_URL`` and ``JUPYTERHUB_API_TOKEN``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    request_timeout = Float(
        15.0,
        help="""Seconds to wait for the platform API before answering 503.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    _client: Any = None
    _http: Any = None
    run_reader: RunReader
    kernel_exits: KernelExitWatcher

    def initialize_settings(self) -> None:
        """Make the Runs panel's reader of MLflow (configured as ``c.RunReader``) and start
        watching for kernels that die (out of memory, most often)."""
        self.run_reader = RunReader(parent=self, log=self.log)
        self.kernel_exits = KernelExitWatcher(self.serverapp, self.log)
        self.kernel_exits.start()

    def initialize_handlers(self) -> None:
        """Register the REST handlers (ExtensionApp prepends the server's base URL)."""
        self.handlers.append((r"/himalia/api/status", StatusHandler))
        self.handlers.append((r"/himalia/kernel-exits", KernelExitsHandler))
        self.handlers.extend(TRACKING_HANDLERS)
        self.handlers.extend(JOBS_HANDLERS)
        self.handlers.extend(DEPLOYMENTS_HANDLERS)
        self.handlers.extend(FEATURES_HANDLERS)
        self.handlers.extend(LABELS_HANDLERS)
        self.handlers.extend(DASHBOARDS_HANDLERS)
        self.handlers.extend(CLUSTERS_HANDLERS)

    def platform_client(self) -> Any:
        """The platform API client, made by ``client_factory`` on first use and then reused.

        Raises ``himalia.sdk.HimaliaError`` when the factory cannot make one; nothing is kept
        then, so a configuration fixed later is picked up by the next request.
        """
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def http_client(self) -> Any:
        """The pass-through routes' one HTTP client, its connections kept alive (a client per
        request costs a new connection and ~50 ms of blocking CPU for its TLS context)."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=self.request_timeout)
        return self._http

    async def stop_extension(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
