"""The Runs panel's side of the user's server: their MLflow runs, read with the server's own
MLflow credentials (``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_TOKEN``, as every kernel has them).

Routes, under the server's base URL; every verb is authenticated by Jupyter Server:

``GET /himalia/tracking/config``
    ``{"ui_url", "run_url_template", "user", "experiment"}``: where the browser finds the MLflow
    UI, and whose runs "mine" means.
``GET /himalia/tracking/runs?scope=notebook|mine&notebook=<path>&max_results=<n>&page_token=<t>``
    ``{"scope", "notebook", "runs": [run...], "next_page_token": str | null}``, newest first.
``GET /himalia/tracking/runs/<run_id>/metrics/<key>``
    ``{"run_id", "key", "history": [{"step", "value", "timestamp"}...]}``, by step.
``GET /himalia/tracking/compare?a=<run_id>&b=<run_id>``
    ``{"a": run, "b": run, "params": [{"key", "a", "b", "diff"}...], "metrics": [{"key", "a",
    "b"}...]}``; ``diff`` is ``same``, ``changed``, ``only-in-a`` or ``only-in-b``.

A run is ``{"run_id", "name", "status", "start_time", "end_time", "experiment_id", "user",
"notebook", "metrics": {key: latest value}, "params": {key: value}, "tags": {himalia.*}, "url"}``
(times in epoch milliseconds; a metric that is not a finite number is ``null``).

Which runs:

* **this notebook**: runs in any active experiment tagged ``himalia.notebook`` = the notebook's
  path (relative to the server's root) and ``himalia.user`` = the server's user; two people's
  ``Untitled.ipynb`` are different notebooks.
* **mine**: every run in the user's own experiment (``MLFLOW_EXPERIMENT_NAME``, ``users/<name>``,
  where every kernel logs by default), then the runs tagged ``himalia.user`` = the user in every
  other active experiment. Each part is newest first.

Errors are ``{"status", "message"}``: 400 for a bad argument (naming it), 404 for an unknown run
or metric, 503 when the server has no tracking URI, 502 when MLflow cannot be reached or fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from traitlets import Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from .app import HimaliaExtensionApp

NOTEBOOK_TAG = "himalia.notebook"
USER_TAG = "himalia.user"
SCOPES = ("notebook", "mine")
DIFFS = ("same", "changed", "only-in-a", "only-in-b")
MAX_PAGE_SIZE = 1000
_EXPERIMENT_PAGE = 1000
_RUN_ORDER = ["attributes.start_time DESC"]


class TrackingError(Exception):
    """A failure the Runs panel shows as is: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- pure functions: filters, shapes, links -------------------------------------------------------

def tag_clause(key: str, value: str) -> str:
    """An MLflow search-filter clause matching runs whose tag ``key`` is ``value``.

    MLflow's filter grammar has no escapes: a value is quoted with whichever quote it does not
    contain. A value with both quotes (or a backslash, which the SQL tokenizer reads as an
    escape) is matched with ``LIKE`` and those characters as ``_`` wildcards; callers keep only
    exact matches (:func:`has_tags`).
    """
    for quote in ("'", '"'):
        if quote not in value and "\\" not in value:
            return f"tags.`{key}` = {quote}{value}{quote}"
    pattern = "".join("_" if ch in "'\"\\" else ch for ch in value)
    return f"tags.`{key}` LIKE '{pattern}'"


def has_tags(run: dict, wanted: dict[str, str]) -> bool:
    """Whether an MLflow REST ``run`` carries exactly these tag values."""
    tags = {t.get("key"): t.get("value") for t in run.get("data", {}).get("tags", [])}
    return all(tags.get(k) == v for k, v in wanted.items())


def mlflow_ui_url(tracking_uri: str, configured: str = "") -> str:
    """Where the browser finds the MLflow UI, ending in ``/``.

    ``configured`` wins. Otherwise a tracking URI with a path (``.../services/mlflow``: MLflow
    behind the hub's proxy) gives that path, on the same origin as JupyterLab; one without a
    path (a standalone MLflow server) gives the URI itself.
    """
    if configured:
        return configured.rstrip("/") + "/"
    parts = urlsplit(tracking_uri)
    path = parts.path.rstrip("/")
    if path:
        return path + "/"
    return f"{parts.scheme}://{parts.netloc}/"


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of one run."""
    return f"{ui_url}#/experiments/{experiment_id}/runs/{run_id}"


def finite(value: Any) -> float | None:
    """A metric value as JSON can carry it: MLflow sends NaN and infinities as strings."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _millis(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def run_summary(run: dict, ui_url: str) -> dict:
    """The Runs panel's view of one MLflow REST ``run`` (``{"info", "data"}``)."""
    info, data = run["info"], run.get("data", {})
    tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
    run_id = info.get("run_id") or info["run_uuid"]
    experiment_id = str(info.get("experiment_id", ""))
    return {
        "run_id": run_id,
        "name": info.get("run_name") or tags.get("mlflow.runName") or run_id,
        "status": info.get("status", ""),
        "start_time": _millis(info.get("start_time")),
        "end_time": _millis(info.get("end_time")),
        "experiment_id": experiment_id,
        "user": tags.get(USER_TAG) or info.get("user_id") or "",
        "notebook": tags.get(NOTEBOOK_TAG),
        "metrics": {m["key"]: finite(m.get("value")) for m in data.get("metrics", [])},
        "params": {p["key"]: p.get("value", "") for p in data.get("params", [])},
        "tags": {k: v for k, v in tags.items() if k.startswith("himalia.")},
        "url": run_url(ui_url, experiment_id, run_id),
    }


def params_diff(a: dict[str, str], b: dict[str, str]) -> list[dict]:
    """Two runs' params side by side, by key, each marked as one of :data:`DIFFS`."""
    rows = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            diff = "only-in-a"
        elif key not in a:
            diff = "only-in-b"
        else:
            diff = "same" if a[key] == b[key] else "changed"
        rows.append({"key": key, "a": a.get(key), "b": b.get(key), "diff": diff})
    return rows


def metrics_side_by_side(a: dict[str, float | None], b: dict[str, float | None]) -> list[dict]:
    """Two runs' latest metric values side by side, by key."""
    return [{"key": key, "a": a.get(key), "b": b.get(key)} for key in sorted(a.keys() | b.keys())]


def encode_page_token(part: int, token: str | None) -> str:
    """Our page token: which part of the listing (see "mine"), and MLflow's token within it."""
    raw = json.dumps({"part": part, "token": token}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(text: str) -> tuple[int, str | None]:
    """The inverse of :func:`encode_page_token`; a 400 for anything this server did not make."""
    try:
        state = json.loads(base64.urlsafe_b64decode(text.encode()))
        part, token = int(state["part"]), state["token"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise TrackingError(400, "page_token is not one this server gave out.") from None
    if part not in (0, 1) or not (token is None or isinstance(token, str)):
        raise TrackingError(400, "page_token is not one this server gave out.")
    return part, token


# -- reading MLflow --------------------------------------------------------------------------------

class RunReader(LoggingConfigurable):
    """Reads the user's runs from the MLflow tracking server for the Runs panel.

    It speaks MLflow's REST API through MLflow's own HTTP layer (``mlflow.utils.rest_utils``), so
    the credentials are those of every MLflow client here (``MLFLOW_TRACKING_TOKEN`` and
    friends), but without ``MlflowClient``'s retries: those back off for minutes when the server
    is down, and the panel must say so at once. Calls are blocking and run in threads.
    """

    tracking_uri = Unicode(
        help="""The MLflow tracking server the panel reads (http or https).

        Defaults to ``MLFLOW_TRACKING_URI``, which the hub sets on every server.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @default("tracking_uri")
    def _default_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI", "")

    ui_url = Unicode(
        "",
        help="""Where browsers find the MLflow UI, for the panel's "Open in MLflow" links.

        Empty (the default): the tracking URI's path when it has one (MLflow behind the hub's
        proxy, ``/services/mlflow/``, on JupyterLab's own origin), else the tracking URI.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    user = Unicode(
        help="""Whose runs are "mine": runs tagged ``himalia.user`` with this name.

        Defaults to ``JUPYTERHUB_USER``, else the ``<name>`` of an experiment ``users/<name>``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @default("user")
    def _default_user(self) -> str:
        name = os.environ.get("JUPYTERHUB_USER", "")
        if not name and self.experiment.startswith("users/"):
            name = self.experiment.removeprefix("users/")
        return name

    experiment = Unicode(
        help="""The user's own MLflow experiment, all of whose runs are "mine".

        Defaults to ``MLFLOW_EXPERIMENT_NAME`` (the hub sets ``users/<name>``).

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @default("experiment")
    def _default_experiment(self) -> str:
        return os.environ.get("MLFLOW_EXPERIMENT_NAME", "")

    timeout = Float(
        10.0,
        help="""Seconds to wait for each MLflow request before answering 502.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    page_size = Int(
        50,
        help="""Runs per page when the panel does not ask for a number (at most 1000).

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    # -- the panel's questions ------------------------------------------------------------------
    async def panel_config(self) -> dict:
        """Where the MLflow UI is, and whose runs "mine" means."""
        ui_url = self._ui_url()
        return {
            "ui_url": ui_url,
            "run_url_template": run_url(ui_url, "{experiment_id}", "{run_id}"),
            "user": self.user,
            "experiment": self.experiment,
        }

    async def runs(self, scope: str, notebook: str, max_results: int | None,
                   page_token: str | None) -> dict:
        """One page of the runs of ``notebook`` (scope ``notebook``) or of the user (``mine``)."""
        if scope not in SCOPES:
            raise TrackingError(400, f"scope must be one of {', '.join(SCOPES)}, not {scope!r}.")
        if scope == "notebook" and not notebook:
            raise TrackingError(400, "notebook (the notebook's path) is required with scope=notebook.")
        size = self.page_size if max_results is None else max_results
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise TrackingError(400, f"max_results must be between 1 and {MAX_PAGE_SIZE}.")
        part, token = decode_page_token(page_token) if page_token else (0, None)
        ui_url = self._ui_url()
        return await self._in_thread(self._list_runs, scope, notebook, size, part, token, ui_url)

    async def metric_history(self, run_id: str, key: str) -> dict:
        """Every logged value of one metric of one run, by step."""
        return await self._in_thread(self._metric_history, run_id, key)

    async def compare(self, a: str, b: str) -> dict:
        """Two runs side by side: their params (with a diff marker) and latest metrics."""
        for name, value in (("a", a), ("b", b)):
            if not value:
                raise TrackingError(400, f"{name} (a run id) is required.")
        ui_url = self._ui_url()
        run_a, run_b = await asyncio.gather(self._in_thread(self._get_run, a, ui_url),
                                            self._in_thread(self._get_run, b, ui_url))
        return {
            "a": run_a,
            "b": run_b,
            "params": params_diff(run_a["params"], run_b["params"]),
            "metrics": metrics_side_by_side(run_a["metrics"], run_b["metrics"]),
        }

    # -- the work, in threads -------------------------------------------------------------------
    def _ui_url(self) -> str:
        self._check_configured()
        return mlflow_ui_url(self.tracking_uri, self.ui_url)

    def _check_configured(self) -> None:
        if not self.tracking_uri:
            raise TrackingError(503, "This server has no MLflow tracking server: MLFLOW_TRACKING_URI "
                                     "is not set (the hub sets it; or set c.RunReader.tracking_uri).")
        if urlsplit(self.tracking_uri).scheme not in ("http", "https"):
            raise TrackingError(503, f"MLFLOW_TRACKING_URI={self.tracking_uri} is not a tracking "
                                     "server: the Runs panel reads MLflow over http(s).")

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        self._check_configured()
        return await asyncio.to_thread(func, *args)

    def _request(self, method: str, endpoint: str, **body: Any) -> dict:
        """One MLflow REST call; its JSON reply, or a :class:`TrackingError`."""
        from mlflow.exceptions import MlflowException
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        where = "params" if method == "GET" else "json"
        try:
            response = http_request(get_default_host_creds(self.tracking_uri),
                                    f"/api/2.0/mlflow/{endpoint}", method, max_retries=0,
                                    backoff_factor=0, timeout=self.timeout, raise_on_status=False,
                                    **{where: body})
        except MlflowException as e:
            raise TrackingError(502, f"MLflow is unreachable at {self.tracking_uri}: "
                                     f"{_short_reason(e)}") from None
        try:
            reply = response.json()
        except ValueError:
            reply = None
        message = reply.get("message") if isinstance(reply, dict) else None
        if response.status_code == 200 and isinstance(reply, dict):
            return reply
        if response.status_code == 200:
            raise TrackingError(502, f"{self.tracking_uri} did not answer like an MLflow server.")
        message = message or f"HTTP {response.status_code} {response.reason}"
        if response.status_code in (400, 403, 404):
            raise TrackingError(response.status_code, message)
        if response.status_code == 401:
            raise TrackingError(502, f"MLflow did not accept this server's credentials "
                                     f"(MLFLOW_TRACKING_TOKEN): {message}")
        raise TrackingError(502, f"MLflow failed: {message}")

    def _experiment_ids(self) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            body: dict[str, Any] = {"max_results": _EXPERIMENT_PAGE, "view_type": "ACTIVE_ONLY"}
            if token:
                body["page_token"] = token
            reply = self._request("POST", "experiments/search", **body)
            ids += [e["experiment_id"] for e in reply.get("experiments", [])]
            token = reply.get("next_page_token")
            if not token:
                return ids

    def _own_experiment_id(self) -> str | None:
        if not self.experiment:
            return None
        try:
            reply = self._request("GET", "experiments/get-by-name", experiment_name=self.experiment)
        except TrackingError as e:
            if e.status == 404:
                return None  # nothing logged yet
            raise
        return reply["experiment"]["experiment_id"]

    def _parts(self, scope: str, notebook: str) -> list[tuple[list[str], dict[str, str]]]:
        """The listing as parts, each (experiment ids, exact tags a run must carry)."""
        if scope == "notebook":
            wanted = {NOTEBOOK_TAG: notebook}
            if self.user:
                wanted[USER_TAG] = self.user
            return [(self._experiment_ids(), wanted)]
        if not self.user and not self.experiment:
            raise TrackingError(503, "This server does not know whose runs are yours: neither "
                                     "JUPYTERHUB_USER nor MLFLOW_EXPERIMENT_NAME is set.")
        own = self._own_experiment_id()
        parts: list[tuple[list[str], dict[str, str]]] = [([own] if own else [], {})]
        if self.user:
            others = [i for i in self._experiment_ids() if i != own]
            parts.append((others, {USER_TAG: self.user}))
        return parts

    def _list_runs(self, scope: str, notebook: str, size: int, part: int, token: str | None,
                   ui_url: str) -> dict:
        parts = self._parts(scope, notebook)
        runs: list[dict] = []
        next_token = None
        while part < len(parts) and len(runs) < size:
            experiment_ids, wanted = parts[part]
            body: dict[str, Any] = {
                "experiment_ids": experiment_ids,
                "max_results": size - len(runs),
                "order_by": _RUN_ORDER,
                "run_view_type": "ACTIVE_ONLY",
            }
            if wanted:
                body["filter"] = " AND ".join(tag_clause(k, v) for k, v in wanted.items())
            if token:
                body["page_token"] = token
            reply = self._request("POST", "runs/search", **body) if experiment_ids else {}
            runs += [run_summary(r, ui_url) for r in reply.get("runs", []) if has_tags(r, wanted)]
            token = reply.get("next_page_token")
            if token:
                next_token = encode_page_token(part, token)
                break
            part += 1
            if part < len(parts):
                next_token = encode_page_token(part, None)
        if part >= len(parts):
            next_token = None
        return {"scope": scope, "notebook": notebook or None, "runs": runs,
                "next_page_token": next_token}

    def _get_run(self, run_id: str, ui_url: str) -> dict:
        return run_summary(self._request("GET", "runs/get", run_id=run_id)["run"], ui_url)

    def _metric_history(self, run_id: str, key: str) -> dict:
        points: list[dict] = []
        token = None
        while True:
            query = {"run_id": run_id, "metric_key": key}
            if token:
                query["page_token"] = token
            reply = self._request("GET", "metrics/get-history", **query)
            points += reply.get("metrics", [])
            token = reply.get("next_page_token")
            if not token:
                break
        if not points:
            self._request("GET", "runs/get", run_id=run_id)  # 404 for an unknown run
            raise TrackingError(404, f"Run {run_id} has no metric {key!r}.")
        history = sorted(
            ({"step": int(p.get("step", 0)), "value": finite(p.get("value")),
              "timestamp": _millis(p.get("timestamp"))} for p in points),
            key=lambda p: (p["step"], p["timestamp"] or 0),
        )
        return {"run_id": run_id, "key": key, "history": history}


def _short_reason(error: Exception) -> str:
    """The root cause of a failed request, without urllib3's nested retry wording."""
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host", "Temporary failure in name resolution"):
        if marker in text:
            return marker
    return text.split(" failed with exception ", 1)[-1][:300]


# -- REST handlers --------------------------------------------------------------------------------

class TrackingHandler(ExtensionHandlerMixin, APIHandler):
    """Base of the ``/himalia/tracking/*`` handlers: answers JSON, errors as ``{status, message}``."""

    auth_resource = "himalia"

    @property
    def reader(self) -> RunReader:
        """The extension app's :class:`RunReader`."""
        return cast("HimaliaExtensionApp", self.extensionapp).run_reader

    async def answer(self, work: Callable[[], Awaitable[dict]]) -> None:
        """Finish with ``work``'s result, or with its :class:`TrackingError` as JSON."""
        try:
            result = await work()
        except TrackingError as e:
            self.log.warning("himalia tracking %s: %s %s", self.request.path, e.status, e.message)
            self.set_status(e.status)
            self.finish(json.dumps({"status": e.status, "message": e.message}))
            return
        self.finish(json.dumps(result))


class TrackingConfigHandler(TrackingHandler):
    """``GET /himalia/tracking/config``."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(self.reader.panel_config)


class RunsHandler(TrackingHandler):
    """``GET /himalia/tracking/runs``: one page of this notebook's runs, or of all of mine."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        async def work() -> dict:
            size = self.get_query_argument("max_results", "")
            if size and not size.isdigit():
                raise TrackingError(400, "max_results must be a whole number.")
            return await self.reader.runs(
                scope=self.get_query_argument("scope", "notebook"),
                notebook=self.get_query_argument("notebook", ""),
                max_results=int(size) if size else None,
                page_token=self.get_query_argument("page_token", "") or None,
            )

        await self.answer(work)


class MetricHistoryHandler(TrackingHandler):
    """``GET /himalia/tracking/runs/<run_id>/metrics/<key>``: one metric's curve."""

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str, key: str) -> None:
        await self.answer(lambda: self.reader.metric_history(run_id, key))


class CompareHandler(TrackingHandler):
    """``GET /himalia/tracking/compare?a=<run_id>&b=<run_id>``: two runs side by side."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(lambda: self.reader.compare(self.get_query_argument("a", ""),
                                                      self.get_query_argument("b", "")))


#: The tracking routes, for ``HimaliaExtensionApp.initialize_handlers``.
HANDLERS = [
    (r"/himalia/tracking/config", TrackingConfigHandler),
    (r"/himalia/tracking/runs", RunsHandler),
    (r"/himalia/tracking/runs/([^/]+)/metrics/(.+)", MetricHistoryHandler),
    (r"/himalia/tracking/compare", CompareHandler),
]
