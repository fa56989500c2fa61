"""The model router: ``/models/<name>/predict`` and ``/models/<name>/healthz`` behind the hub's proxy.

It authenticates every call (an API key of the deployment, or a hub token of its owner, an
admin or someone it is shared with), picks a version by traffic share (a blue/green swap moves
all of it at once; a canary gets its percent), forwards the body unchanged to one of that
version's ``bentoml serve`` processes, and answers with ``X-Himalia-Version``. A version that
declares feature refs gets their online values added to each row by entity key first
(:class:`FeatureFiller`), so callers send only the keys. Each exchange is
queued for the prediction log, which a background task writes in batches off the request
path. Retired versions leave the table at once and are stopped only when the requests they
are answering are done, so a swap fails no request.

The table is built by the manager (manager.py), which owns the processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import aiohttp
from aiohttp import web
from sqlalchemy import insert, update

from ..features.repo import ENTITY_KEY_SERIALIZATION_VERSION
from ..services.api.identity import platform_roles
from ..storage import Database
from .models import DeploymentKey, Prediction
from .service import may_use

log = logging.getLogger("himalia.deployments")

API_KEY_HEADER = "X-Api-Key"
VERSION_HEADER = "X-Himalia-Version"
JSON_TYPES = ("application/json", "text/json")
#: Bodies larger than this are logged as their size only.
MAX_LOGGED_BYTES = 1024 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
UPSTREAM_TIMEOUT = 120
FLUSH_SECONDS = 0.5
FLUSH_ROWS = 2000


@dataclass(eq=False)
class Target:
    """One serving version as the router sees it: where its processes listen."""

    version_id: int
    version: int
    predict_path: str
    generic: bool
    upstreams: list[str] = field(default_factory=list)
    inflight: int = 0
    #: Feature refs filled in by entity key, and their views (ViewSpec JSON by view name).
    features: tuple[str, ...] = ()
    feature_specs: dict = field(default_factory=dict)
    _next: int = 0

    def upstream(self) -> str | None:
        if not self.upstreams:
            return None
        self._next = (self._next + 1) % len(self.upstreams)
        return self.upstreams[self._next]


@dataclass
class Route:
    deployment_id: int
    name: str
    owner: str
    shared_with: frozenset[str]
    #: (target, percent of traffic); the percents add up to 100 once a version serves.
    targets: list[tuple[Target, int]]

    def pick(self) -> Target | None:
        live = [(t, w) for t, w in self.targets if w > 0 and t.upstreams]
        if not live:
            return None
        if len(live) == 1:
            return live[0][0]
        point = random.random() * sum(w for _, w in live)
        for target, weight in live:
            point -= weight
            if point < 0:
                return target
        return live[-1][0]


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status,
                             headers=headers)


class FeatureFiller:
    """Adds the online values of a version's feature refs to the rows of a scoring request,
    looked up by the rows' entity keys in the feature store's online store."""

    def __init__(self, online: dict | None, project: str):
        self.online, self.project = online, project
        self._store = None

    def _reader(self):
        if self._store is None:
            from himalia.features.online import OnlineStore

            self._store = OnlineStore.from_config(self.online, self.project,
                                                  ENTITY_KEY_SERIALIZATION_VERSION)
        return self._store

    def fill(self, target: Target, body: bytes) -> bytes:
        """The request with the features as extra columns (``dataframe_split`` or
        ``dataframe_records``); ValueError with what to send when it lacks the keys."""
        import pandas as pd

        from himalia.features.spec import ViewSpec

        if not self.online:
            raise ValueError("the platform has no feature store to fill features from")
        try:
            request = json.loads(body)
        except ValueError:
            raise ValueError("the body is not JSON") from None
        if isinstance(request, dict) and "dataframe_split" in request:
            split = request["dataframe_split"]
            frame = pd.DataFrame(split.get("data") or [], columns=split.get("columns"))
        elif isinstance(request, dict) and "dataframe_records" in request:
            frame = pd.DataFrame(request["dataframe_records"])
        else:
            raise ValueError("send the entity keys as dataframe_split or dataframe_records; this "
                             "deployment fills in its features from them")
        views = {name: ViewSpec.from_json(spec) for name, spec in target.feature_specs.items()}
        keys = sorted({k.name for v in views.values() for k in v.join_keys})
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ValueError(f"each row needs the entity key column(s) {', '.join(missing)}; "
                             f"the features {', '.join(target.features)} are looked up by them")
        values = self._reader().read(views, list(target.features), {k: frame[k].tolist() for k in keys})
        for column in values.columns:
            if column not in keys:
                frame[column] = values[column].to_numpy()
        return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


@dataclass
class Caller:
    label: str
    key_id: int | None = None


class PredictionLog:
    """Queues exchanges and writes them in batches from a thread, off the request path."""

    def __init__(self, db: Database):
        self.db = db
        self.rows: list[tuple] = []
        self.keys_used: dict[int, datetime] = {}
        self.wakeup = asyncio.Event()
        self.written = 0

    def add(self, deployment_id: int, version: int, started: float, latency_ms: float, status: int,
            caller: Caller, inputs: bytes, outputs: bytes) -> None:
        self.rows.append((deployment_id, version, started, latency_ms, status, caller.label,
                          inputs, outputs))
        if caller.key_id is not None:
            self.keys_used[caller.key_id] = datetime.now(timezone.utc)
        if len(self.rows) >= FLUSH_ROWS:
            self.wakeup.set()

    @staticmethod
    def _text(body: bytes) -> str:
        if len(body) > MAX_LOGGED_BYTES:
            return json.dumps({"not_logged": f"{len(body)} bytes"})
        return body.decode("utf-8", "replace")

    def _write(self, rows: list[tuple], keys_used: dict[int, datetime]) -> None:
        values = [{"deployment_id": d, "version": v,
                   "at": datetime.fromtimestamp(started, timezone.utc), "latency_ms": round(ms, 3),
                   "status": status, "caller": caller, "inputs": self._text(i),
                   "outputs": self._text(o)}
                  for d, v, started, ms, status, caller, i, o in rows]
        with self.db.session() as session:
            if values:
                session.execute(insert(Prediction), values)
            for key_id, when in keys_used.items():
                session.execute(update(DeploymentKey).where(DeploymentKey.id == key_id)
                                .values(last_used_at=when))

    async def flush(self) -> None:
        rows, self.rows = self.rows, []
        keys_used, self.keys_used = self.keys_used, {}
        if rows or keys_used:
            try:
                await asyncio.to_thread(self._write, rows, keys_used)
                self.written += len(rows)
            except Exception:  # noqa: BLE001 - keep them for the next try rather than lose them
                log.exception("could not write %d predictions; retrying", len(rows))
                self.rows[:0] = rows
                await asyncio.sleep(1)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wakeup.wait(), FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            await self.flush()


class Router:
    def __init__(self, db: Database, user_for_token: Callable, has_access: Callable[[dict], bool],
                 access_scope: str, features: FeatureFiller | None = None):
        self.db = db
        self.features = features or FeatureFiller(None, "")
        self.user_for_token = user_for_token
        self.has_access = has_access
        self.access_scope = access_scope
        self.routes: dict[str, Route] = {}
        #: sha256 of a key -> (deployment id, key id), for keys not revoked.
        self.keys: dict[str, tuple[int, int]] = {}
        self.log = PredictionLog(db)
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/models/{name}/predict", self.predict)
        app.router.add_get("/models/{name}/healthz", self.healthz)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT), auto_decompress=False)
        self._log_task = asyncio.get_running_loop().create_task(self.log.run())

    async def _stop(self, app: web.Application) -> None:
        self._log_task.cancel()
        await self.log.flush()
        if self.session is not None:
            await self.session.close()

    # -- who is calling --------------------------------------------------------------------------
    async def caller(self, request: web.Request, route: Route | None) -> Caller | web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        key = request.headers.get(API_KEY_HEADER, "").strip()
        if not key and scheme.lower() == "bearer" and value.startswith("hmk_"):
            key = value
        if key:
            found = self.keys.get(hashlib.sha256(key.encode()).hexdigest())
            if found is None:
                return _error(401, "The API key is invalid or revoked.")
            if route is None or found[0] != route.deployment_id:
                return _error(403, "This API key belongs to another deployment.")
            return Caller(f"key:{key[:12]}", key_id=found[1])
        if scheme.lower() not in ("token", "bearer") or not value:
            return _error(401, "Authentication required: send 'Authorization: token <hub token>' "
                               f"or '{API_KEY_HEADER}: <API key of the deployment>'.",
                          {"WWW-Authenticate": "Bearer"})
        model = await self.user_for_token(value)
        if not model:
            return _error(401, "The token is invalid, expired or revoked.")
        if not self.has_access(model):
            return _error(403, f"The token lacks the scope to call models ({self.access_scope}).")
        name = model.get("name", "")
        if route is None or not may_use(name, platform_roles(model), route.owner, route.shared_with):
            return _error(404, f"No deployment {request.match_info['name']!r} (or it is not "
                               f"shared with '{name}').")
        return Caller(f"user:{name}")

    # -- handlers --------------------------------------------------------------------------------
    async def predict(self, request: web.Request) -> web.Response:
        started = time.time()
        route = self.routes.get(request.match_info["name"])
        caller = await self.caller(request, route)
        if isinstance(caller, web.Response):
            return caller
        content_type = request.content_type
        if "pickle" in content_type:
            return _error(415, f"{content_type} is refused: no request body is ever unpickled. "
                               "Send JSON (MLflow's scoring format).")
        target = route.pick()
        if target is None:
            return _error(503, f"Deployment {route.name!r} has no version serving yet.",
                          {"Retry-After": "5"})
        if target.generic and content_type not in JSON_TYPES:
            return _error(415, f"Send JSON (Content-Type: application/json), not {content_type!r}: "
                               "MLflow's scoring format with dataframe_split, dataframe_records, "
                               "instances or inputs.")
        body = await request.read()
        if target.features and target.generic:
            try:
                body = await asyncio.to_thread(self.features.fill, target, body)
            except ValueError as e:
                return _error(400, f"Deployment {route.name!r}: {e}.")
        target.inflight += 1
        try:
            status, payload, answer_type = await self.forward(target, body, content_type)
        finally:
            target.inflight -= 1
        latency = (time.time() - started) * 1000
        self.log.add(route.deployment_id, target.version, started, latency, status, caller,
                     body, payload)
        return web.Response(body=payload, status=status, content_type=answer_type,
                            headers={VERSION_HEADER: str(target.version)})

    async def forward(self, target: Target, body: bytes, content_type: str) -> tuple[int, bytes, str]:
        """One try, and one more on another process when the first cannot be reached."""
        for attempt in (1, 2):
            upstream = target.upstream()
            if upstream is None:
                break
            try:
                async with self.session.post(upstream + target.predict_path, data=body,
                                             headers={"Content-Type": content_type or "application/json"}
                                             ) as answer:
                    payload = await answer.read()
                    return answer.status, payload, answer.content_type
            except aiohttp.ClientConnectionError as e:
                log.warning("version %s at %s: %s", target.version, upstream, type(e).__name__)
            except asyncio.TimeoutError:
                return 504, json.dumps({"status": 504, "message": "The model did not answer within "
                                        f"{UPSTREAM_TIMEOUT} s."}).encode(), "application/json"
        return 502, json.dumps({"status": 502, "message": f"Version {target.version} cannot be "
                                "reached; the platform is restarting it."}).encode(), "application/json"

    async def healthz(self, request: web.Request) -> web.Response:
        route = self.routes.get(request.match_info["name"])
        caller = await self.caller(request, route)
        if isinstance(caller, web.Response):
            return caller
        versions = {str(t.version): {"traffic": w, "processes_ready": len(t.upstreams)}
                    for t, w in route.targets}
        ok = route.pick() is not None
        return web.json_response({"status": "ok" if ok else "down", "name": route.name,
                                  "versions": versions}, status=200 if ok else 503)

    async def not_found(self, request: web.Request) -> web.Response:
        return _error(404, f"No such route: {request.method} {request.path}. A deployment answers "
                           "POST /models/<name>/predict and GET /models/<name>/healthz.")

