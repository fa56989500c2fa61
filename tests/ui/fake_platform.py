"""Stand-ins for the himalia platform API, for JupyterLab servers started by the UI tests.

* :class:`FakeClient` replaces the platform API client itself: set
  ``c.HimaliaExtensionApp.client_factory = fake_platform.FakeClient`` in the server's config.
* :class:`FakeDeploymentsAPI` is an HTTP server on 127.0.0.1 that answers the platform API's
  deployments routes from memory, for the real ``himalia.sdk.Client`` to call.
"""

from __future__ import annotations

import http.server
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit


class FakeClient:
    """Answers like ``himalia.sdk.Client`` for user ``ada``; each health check is numbered."""

    def __init__(self) -> None:
        self.health_checks = 0

    async def awhoami(self) -> dict:
        """The identity of a scientist."""
        return {"name": "ada", "roles": ["scientist"], "scopes": ["read:jobs"]}

    async def ahealth(self) -> dict:
        """A platform whose MLflow service is down; the hub's detail counts the checks."""
        self.health_checks += 1
        return {
            "ok": False,
            "services": {
                "hub": {"ok": True, "detail": f"check {self.health_checks}"},
                "service:mlflow": {"ok": False, "detail": "ConnectError"},
            },
        }


#: The platform API's prefix, as ``himalia.sdk.Client`` calls it.
API_PREFIX = "/services/himalia/api/v1"
DEPLOYMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


class PlatformRefusal(Exception):
    """An error answer of the fake API: ``{"status", "message"}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ReceivedCall:
    """One request the fake API answered: its path below the API prefix, and its JSON body."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: object


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class FakeDeploymentsAPI:
    """The platform API's deployments routes (the contract of himalia issue 10), in memory, on
    127.0.0.1: deployments with versions, promote and rollback, per-minute metrics made up from
    each version's traffic, logs as text, and API keys (the whole key answered once). No model
    is built or served. Requests without ``Authorization: token <token>`` get a 401; every
    other request is kept in :attr:`received`.

    Point ``himalia.sdk.Client(api.url, api.token)`` at it.
    """

    def __init__(self, token: str, user: str = "ada") -> None:
        self.token = token
        self.user = user
        self.received: list[ReceivedCall] = []
        self.deployments: dict[str, dict] = {}
        self.keys: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self._server: http.server.ThreadingHTTPServer | None = None
        self._routes: list[tuple[str, re.Pattern, Callable[..., tuple[int, object]]]] = [
            ("GET", re.compile(r"/deployments"), self._list),
            ("POST", re.compile(r"/deployments"), self._deploy),
            ("GET", re.compile(r"/deployments/([^/]+)"), self._get),
            ("DELETE", re.compile(r"/deployments/([^/]+)"), self._undeploy),
            ("POST", re.compile(r"/deployments/([^/]+)/promote"), self._promote),
            ("POST", re.compile(r"/deployments/([^/]+)/rollback"), self._rollback),
            ("GET", re.compile(r"/deployments/([^/]+)/metrics"), self._metrics),
            ("GET", re.compile(r"/deployments/([^/]+)/logs"), self._logs),
            ("GET", re.compile(r"/deployments/([^/]+)/keys"), self._list_keys),
            ("POST", re.compile(r"/deployments/([^/]+)/keys"), self._create_key),
            ("DELETE", re.compile(r"/deployments/([^/]+)/keys/(\d+)"), self._revoke_key),
        ]

    # -- running ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL a ``himalia.sdk.Client`` takes (it adds ``api/v1/``)."""
        assert self._server is not None, "start() the fake API first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/services/himalia/"

    def __enter__(self) -> "FakeDeploymentsAPI":
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, answer = api.answer(self.command, parts.path, parse_qs(parts.query), raw,
                                            self.headers.get("authorization", ""))
                if isinstance(answer, str):
                    data, content_type = answer.encode(), "text/plain; charset=utf-8"
                else:
                    data, content_type = json.dumps(answer).encode(), "application/json"
                self.send_response(status)
                if status != 204:
                    self.send_header("content-type", content_type)
                else:
                    data = b""
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        """No deployments, no keys, nothing received."""
        with self._lock:
            self.deployments.clear()
            self.keys.clear()
            self.received.clear()

    def calls(self, method: str, path: str) -> list[ReceivedCall]:
        """The requests received for ``method path`` (below the API prefix)."""
        with self._lock:
            return [r for r in self.received if (r.method, r.path) == (method, path)]

    # -- state -----------------------------------------------------------------------------
    def add(self, name: str, versions: list[dict], minutes_ago: int = 90) -> dict:
        """A deployment of the user's with ``versions`` (newest first), each a partial version
        JSON (``version``, ``state``, ``traffic``, ``reason``, ``model_uri``...)."""
        made = _now() - timedelta(minutes=minutes_ago)
        with self._lock:
            deployment = {
                "id": self._new_id(), "name": name, "owner": self.user,
                "url": f"/models/{name}/", "shared_with": [], "created_at": _iso(made),
                "updated_at": _iso(made), "health": "pending",
                "versions": [self._version(fields, made) for fields in versions],
            }
            self.deployments[name] = deployment
            self.keys[name] = []
            self._recompute(deployment)
            return deployment

    def change_version(self, name: str, number: int, **fields: object) -> None:
        """Change a version as the platform would on its own (it failed, it started serving)."""
        with self._lock:
            deployment = self.deployments[name]
            next(v for v in deployment["versions"] if v["version"] == number).update(fields)
            self._recompute(deployment)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _version(self, fields: dict, made: datetime) -> dict:
        number = fields["version"]
        version = {
            "version": number, "state": "serving", "reason": None,
            "model_uri": f"runs:/run{number}/model", "run_id": f"run{number}",
            "bento_tag": None, "traffic": 0, "replicas": 1, "created_by": self.user,
            "created_at": _iso(made + timedelta(minutes=number)), "started_at": None,
            "ended_at": None, "lineage": {},
        }
        version.update(fields)
        return version

    @staticmethod
    def _recompute(deployment: dict) -> None:
        live = [v for v in deployment["versions"] if v["traffic"] > 0]
        if not live:
            deployment["health"] = "pending"
        elif all(v["state"] == "serving" for v in live):
            deployment["health"] = "serving"
        else:
            deployment["health"] = "degraded"
        deployment["updated_at"] = _iso(_now())

    # -- answering -------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
               authorization: str) -> tuple[int, object]:
        """The status and the JSON (or text) answer to one request."""
        try:
            if authorization != f"token {self.token}":
                raise PlatformRefusal(401, "Authentication required.")
            if not path.startswith(API_PREFIX):
                raise PlatformRefusal(404, f"No route {path}.")
            path = path[len(API_PREFIX):]
            body = json.loads(raw) if raw else None
            with self._lock:
                self.received.append(ReceivedCall(method, path, query, body))
                for verb, pattern, route in self._routes:
                    match = pattern.fullmatch(path)
                    if verb == method and match:
                        return route(*match.groups(), query=query, body=body)
            raise PlatformRefusal(404, f"No route {method} {path}.")
        except PlatformRefusal as refusal:
            return refusal.status, {"status": refusal.status, "message": refusal.message}

    def _deployment(self, name: str) -> dict:
        if name not in self.deployments:
            raise PlatformRefusal(404, f"No deployment named {name!r}.")
        return self.deployments[name]

    def _list(self, query: dict, body: object) -> tuple[int, object]:
        return 200, {"deployments": list(self.deployments.values())}

    def _get(self, name: str, query: dict, body: object) -> tuple[int, object]:
        return 200, self._deployment(name)

    def _deploy(self, query: dict, body: object) -> tuple[int, object]:
        fields = body if isinstance(body, dict) else {}
        name = fields.get("name", "")
        if not isinstance(name, str) or not DEPLOYMENT_NAME.fullmatch(name):
            raise PlatformRefusal(422, f"name: {name!r} is not a DNS label.")
        if not fields.get("model_uri"):
            raise PlatformRefusal(422, "model_uri: give the MLflow model to serve.")
        canary = int(fields.get("canary_percent") or 0)
        deployment = self.deployments.get(name)
        if deployment is None:
            deployment = {"id": self._new_id(), "name": name, "owner": self.user,
                          "url": f"/models/{name}/", "shared_with": [],
                          "created_at": _iso(_now()), "updated_at": _iso(_now()),
                          "health": "pending", "versions": []}
            self.deployments[name] = deployment
            self.keys[name] = []
        number = max((v["version"] for v in deployment["versions"]), default=0) + 1
        # A canary takes its share while it builds; a full swap waits until it serves.
        live = [v for v in deployment["versions"] if v["traffic"] > 0]
        version = self._version({"version": number, "state": "building",
                                 "model_uri": fields["model_uri"],
                                 "traffic": canary if live else 0,
                                 "replicas": int(fields.get("replicas") or 1),
                                 "created_at": _iso(_now())}, _now())
        if live and canary:
            live[0]["traffic"] = 100 - canary
        deployment["versions"].insert(0, version)
        self._recompute(deployment)
        return 202, {"deployment": deployment, "version": version}

    def _undeploy(self, name: str, query: dict, body: object) -> tuple[int, object]:
        self._deployment(name)
        del self.deployments[name]
        del self.keys[name]
        return 204, None

    def _promote(self, name: str, query: dict, body: object) -> tuple[int, object]:
        deployment = self._deployment(name)
        live = [v for v in deployment["versions"] if v["traffic"] > 0 and v["state"] != "retired"]
        if len(live) < 2:
            raise PlatformRefusal(409, f"{name} has no canary to promote.")
        canary, *replaced = live
        canary["traffic"] = 100
        for version in replaced:
            version.update(traffic=0, state="retired", ended_at=_iso(_now()),
                           reason=f"replaced by version {canary['version']}")
        self._recompute(deployment)
        return 200, deployment

    def _rollback(self, name: str, query: dict, body: object) -> tuple[int, object]:
        deployment = self._deployment(name)
        live = [v for v in deployment["versions"] if v["traffic"] > 0 and v["state"] != "retired"]
        if len(live) < 2:
            raise PlatformRefusal(409, f"{name} has no canary to roll back.")
        canary, stable = live[0], live[1]
        canary.update(traffic=0, state="retired", ended_at=_iso(_now()), reason="rolled back")
        stable["traffic"] = 100
        self._recompute(deployment)
        return 200, deployment

    def _metrics(self, name: str, query: dict, body: object) -> tuple[int, object]:
        """Per minute, each version with traffic gets requests in proportion to its share and a
        latency that grows with its version number (made up, but the same each time)."""
        deployment = self._deployment(name)
        minutes = min(int(query.get("minutes", ["60"])[0]), 30)
        end = _now().replace(second=0)
        buckets, totals = [], {}
        for version in deployment["versions"]:
            if version["traffic"] == 0 or version["state"] != "serving":
                continue
            number = version["version"]
            p50 = 8.0 + 4 * number
            for minute in range(minutes, 0, -1):
                count = version["traffic"] // 5 + minute % 3
                buckets.append({"at": _iso(end - timedelta(minutes=minute)), "version": number,
                                "count": count, "errors": 0,
                                "p50_ms": p50 + minute % 4, "p95_ms": 2.5 * p50 + minute % 7})
            mine = [b for b in buckets if b["version"] == number]
            totals[str(number)] = {"count": sum(b["count"] for b in mine), "errors": 0,
                                   "p50_ms": p50 + 1.5, "p95_ms": 2.5 * p50 + 3}
        return 200, {"buckets": buckets, "totals": totals}

    def _logs(self, name: str, query: dict, body: object) -> tuple[int, object]:
        deployment = self._deployment(name)
        number = int(query.get("version", [deployment["versions"][0]["version"]])[0])
        if not any(v["version"] == number for v in deployment["versions"]):
            raise PlatformRefusal(404, f"{name} has no version {number}.")
        return 200, (f"==> build of {name} v{number} <==\nimported the MLflow model\n"
                     f"==> serve of {name} v{number} <==\nready on 127.0.0.1\n")

    def _list_keys(self, name: str, query: dict, body: object) -> tuple[int, object]:
        self._deployment(name)
        return 200, {"keys": self.keys[name]}

    def _create_key(self, name: str, query: dict, body: object) -> tuple[int, object]:
        self._deployment(name)
        label = body.get("label", "") if isinstance(body, dict) else ""
        prefix = f"hmk_{secrets.token_hex(4)}"
        key = {"id": self._new_id(), "prefix": prefix, "label": label, "created_by": self.user,
               "created_at": _iso(_now()), "revoked_at": None, "last_used_at": None}
        self.keys[name].append(key)
        whole = {k: key[k] for k in ("id", "prefix", "label", "created_at")}
        return 201, {**whole, "key": f"{prefix}_{secrets.token_urlsafe(24)}"}

    def _revoke_key(self, name: str, key_id: str, query: dict, body: object) -> tuple[int, object]:
        self._deployment(name)
        for key in self.keys[name]:
            if key["id"] == int(key_id):
                key["revoked_at"] = _iso(_now())
                return 204, None
        raise PlatformRefusal(404, f"{name} has no key {key_id}.")
