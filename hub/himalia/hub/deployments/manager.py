"""The deployment manager: the hub-managed service ``himalia-models``.

One process that

* builds each new version's bento (build.py, as the deployment's owner, with a short-lived
  hub token of the owner to read the model from MLflow);
* runs each live version as ``replicas`` ``bentoml serve`` processes on free loopback ports, as
  the owner, each in its own process group with a parent-death signal (a killed manager takes
  them along; their groups are also recorded and killed by the next manager), and restarts a
  process that dies;
* checks a starting version (its health endpoint, then a smoke request with the model's input
  example) and only then swaps it in (service.swap_in); a version that fails either is marked
  failed with the reason and the log lines that explain it, and never gets traffic;
* serves the model router (router.py) on the service's port, behind the hub's proxy at
  ``/models/``; a retired version leaves the router's table at once and is stopped once the
  requests it is answering are done;
* answers the API on its control socket (control.py).

It looks at the database when woken and every ``poll_seconds``. When the platform runs as root
it runs as root too (it starts processes as their owners), like the job runner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import uvloop
from aiohttp import web
from jupyterhub.services.auth import HubAuth

from ..cli.common import free_port
from ..owners import Account, Owners
from ..storage import Database
from ..supervisor import (children, control_socket, forget, keep_running, kill_leftovers, remember,
                          signal_group)
from ..unixusers import AccountError
from . import service
from .build import CUSTOM_PREDICT_PATH, GENERIC_PREDICT_PATH, RESULT_MARKER
from .models import BUILDING, SERVING, STARTING
from .router import FeatureFiller, Route, Router, Target

log = logging.getLogger("himalia.deployments")
SERVICE = "himalia-models"
#: The owner's token a build gets: read the model from MLflow, nothing else.
BUILD_TOKEN_SCOPES = ["access:services!service=mlflow", "read:users:name!user",
                      "read:users:groups!user", "read:roles:users!user"]
LOG_TAIL_LINES = 12
#: A serving version whose processes cannot be started again (after a restart) is tried again
#: this long after; it keeps its traffic share meanwhile, and its route answers 503.
RESTORE_RETRY_SECONDS = 30


class VersionFailed(Exception):
    """Why a version cannot serve; becomes its ``reason``."""


def _run_features(run: dict) -> list[str] | None:
    """The feature refs a run's training set read (its ``himalia.features`` tag), if any."""
    for tag in run.get("run", {}).get("data", {}).get("tags", []) or []:
        if tag.get("key") == "himalia.features":
            try:
                refs = json.loads(tag.get("value") or "")
            except ValueError:
                return None
            return [str(r) for r in refs] if isinstance(refs, list) else None
    return None


@dataclass
class ManagerConfig:
    state_dir: str
    db_url: str
    root: str
    socket: str
    tracking_url: str
    system_users: bool = False
    user_prefix: str = "jupyter-"
    home_root: str = "/home"
    account_registry: str = ""
    #: The API's account, which reads the logs and may connect to the socket.
    files_uid: int | None = None
    files_gid: int | None = None
    build_timeout: float = 900
    start_timeout: float = 180
    smoke_timeout: float = 30
    drain_timeout: float = 30
    poll_seconds: float = 2.0
    #: The feature store's online store (``FeatureSettings.online``) and project, for versions
    #: that fill in features; None without a feature store.
    features_online: dict | None = None
    features_project: str = "himalia"


@dataclass(eq=False)
class Replica:
    index: int
    port: int = 0
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    #: ``bentoml serve`` runs its worker processes in process groups of their own.
    workers: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Live:
    """A version the manager has (or is making) processes for."""

    id: int
    deployment: str
    version: int
    owner: str
    replicas: int
    target: Target
    bento_tag: str | None = None
    processes: list[Replica] = field(default_factory=list)
    task: asyncio.Task | None = None
    stopping: bool = False


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The log lines that explain a failure: the last traceback's frames in the cell's code and
    its final line, else the last lines."""
    rows = [r for r in text.splitlines() if r.strip()]
    for i in range(len(rows) - 1, -1, -1):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", rows[i]):
            frames = [r.strip() for r in rows[:i] if "user_code.py" in r or "himalia_service.py" in r]
            return " | ".join([*frames[-3:], rows[i].strip()])
    return " | ".join(r.strip() for r in rows[-lines:])


class Manager:
    def __init__(self, config: ManagerConfig, hub_api_url: str, hub_token: str, port: int):
        self.config = config
        self.root = Path(config.root)
        self.db = Database(config.db_url)
        self.hub_api_url = hub_api_url.rstrip("/")
        self.hub_token = hub_token
        self.port = port
        self.live: dict[int, Live] = {}
        self.tasks: set[asyncio.Task] = set()
        self.wakeup = asyncio.Event()
        self.stopping = False
        self.pids_dir = self.root / "pids"
        self._lock = asyncio.Lock()
        self._tokens: dict[str, tuple[float, str]] = {}
        #: version id -> monotonic time before which a failed restore is not tried again
        self._retry_at: dict[int, float] = {}
        self.http: httpx.AsyncClient | None = None
        self.owners: Owners | None = None
        self.auth = HubAuth(cache_max_age=10)
        self.router = Router(self.db, self._user_for_token,
                             lambda model: self.auth.check_scopes(self.auth.access_scopes, model),
                             ", ".join(sorted(self.auth.access_scopes)),
                             FeatureFiller(config.features_online, config.features_project))

    async def _user_for_token(self, token: str) -> dict | None:
        return await self.auth.user_for_token(token, sync=False)

    # -- lifecycle -----------------------------------------------------------------------------
    async def main(self) -> None:
        os.umask(0o022)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pids_dir.mkdir(exist_ok=True)
        left = kill_leftovers(self.pids_dir)
        if left:
            log.warning("killed %d model server(s) an earlier manager left behind", left)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.http = httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(retries=3))
        cfg = self.config
        self.owners = Owners(self.http, self.hub_api_url, self.hub_token, state_dir=cfg.state_dir,
                             system_users=cfg.system_users, user_prefix=cfg.user_prefix,
                             account_registry=cfg.account_registry, home_root=cfg.home_root)
        runner = web.AppRunner(self.router.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        control = await self.serve_control()
        log.info("model router on 127.0.0.1:%s", self.port)
        try:
            while not self.stopping:
                await self.reconcile()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), cfg.poll_seconds)
                except asyncio.TimeoutError:
                    pass
                self.wakeup.clear()
        finally:
            control.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*[self.stop_processes(live) for live in self.live.values()],
                                 return_exceptions=True)
            await runner.cleanup()
            await self.http.aclose()
            self.db.close()

    def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- the desired state ---------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Routes and keys from the database; a task for each new live version; retired ones
        leave the table and are stopped."""
        async with self._lock:
            rows, keys = await asyncio.to_thread(self._read)
            self.router.keys = keys
            wanted = set()
            routes: dict[str, Route] = {}
            for d, v in rows:
                wanted.add(v.id)
                route = routes.setdefault(d.name, Route(d.id, d.name, d.owner,
                                                        frozenset(d.shared_with or []), []))
                live = self.live.get(v.id)
                if live is None and self._retry_at.get(v.id, 0) > time.monotonic():
                    continue
                if live is None:
                    custom = service.is_custom(v)
                    target = Target(v.id, v.version,
                                    CUSTOM_PREDICT_PATH if custom else GENERIC_PREDICT_PATH,
                                    generic=not custom, features=tuple(v.features or ()),
                                    feature_specs=dict(v.feature_specs or {}))
                    live = Live(v.id, d.name, v.version, d.owner, v.replicas, target,
                                bento_tag=v.bento_tag)
                    self.live[v.id] = live
                    live.task = self._spawn(self.bring_up(live, v.state))
                if v.state == SERVING:
                    route.targets.append((live.target, v.traffic))
            self.router.routes = routes
            for version_id, live in list(self.live.items()):
                if version_id not in wanted and not live.stopping:
                    live.stopping = True
                    self._spawn(self.retire(live))

    def _read(self) -> tuple[list, dict]:
        with self.db.session() as db:
            return service.live_versions(db), service.active_keys(db)

    def _write(self, change, *args) -> bool:
        with self.db.session() as db:
            return change(db, *args)

    # -- one version ---------------------------------------------------------------------------
    def logs(self, name: str) -> Path:
        """Logs and input examples: the platform's, readable by the API."""
        return self.root / name / "logs"

    @staticmethod
    def owner_folder(account: Account, name: str) -> Path:
        """The bento store and build folders of a deployment, in its owner's home: what the
        owner's own processes build and serve, as the owner."""
        return Path(account.home) / ".himalia" / "deployments" / name

    async def bring_up(self, live: Live, state: str) -> None:
        try:
            account = await self.owners.account(live.owner)
            if state == BUILDING:
                built = await self.build(live, account)
                live.bento_tag = built["bento_tag"]
                self.build_file(live).write_text(json.dumps(built))
                if not await asyncio.to_thread(self._write, service.mark_built, live.id, live.bento_tag):
                    return
                state = STARTING
            await self.start_processes(live, account)
            if state == STARTING:
                await self.smoke(live)
                if not await asyncio.to_thread(self._write, service.swap_in, live.id):
                    return
                log.info("%s version %s serves", live.deployment, live.version)
            await self.reconcile()
        except asyncio.CancelledError:
            raise
        except (VersionFailed, AccountError, httpx.HTTPError, OSError) as e:
            reason = str(e) if isinstance(e, VersionFailed) else f"{type(e).__name__}: {e}"
            await self.stop_processes(live)
            if state == SERVING:
                # It served before the platform restarted: not a bad version, so try again.
                log.warning("%s version %s could not be restarted (%s); trying again in %s s",
                            live.deployment, live.version, reason, RESTORE_RETRY_SECONDS)
                self._retry_at[live.id] = time.monotonic() + RESTORE_RETRY_SECONDS
                self.live.pop(live.id, None)
            else:
                log.warning("%s version %s failed: %s", live.deployment, live.version, reason)
                await asyncio.to_thread(self._write, service.mark_failed, live.id, reason)
            self.wakeup.set()

    def _prepare_folder(self, live: Live, account: Account) -> tuple[Path, Path]:
        logs = self.logs(live.deployment)
        logs.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0 and self.config.files_uid is not None:
            os.chown(logs, self.config.files_uid, self.config.files_gid)
        folder = self.owner_folder(account, live.deployment)
        version_dir, home = folder / f"v{live.version}", folder / "bentoml"
        if account.uid is not None and os.geteuid() == 0:
            # Made by the owner's own account: root never creates paths inside a home.
            subprocess.run(["mkdir", "-p", str(version_dir), str(home)], check=True,
                           **account.popen_user())
        else:
            for path in (version_dir, home):
                path.mkdir(parents=True, exist_ok=True)
        return version_dir, home

    def _log_file(self, live: Live, name: str):
        path = self.logs(live.deployment) / f"v{live.version}-{name}.log"
        out = open(path, "ab")
        if os.geteuid() == 0 and self.config.files_uid is not None:
            os.chown(path, self.config.files_uid, self.config.files_gid)
        return out

    def _environment(self, account: Account, home: Path, extra: dict | None = None) -> dict:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": account.home,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        env.update(extra or {})
        return env

    async def _owner_token(self, owner: str, note: str, seconds: int) -> tuple[str, str]:
        return await self.owners.mint_token(owner, note, seconds, BUILD_TOKEN_SCOPES)

    async def build(self, live: Live, account: Account) -> dict:
        """Run build.py as the owner; its result, or VersionFailed with the log lines."""
        with self.db.session() as db:
            version = db.get(service.DeploymentVersion, live.id)
            spec = {"name": live.deployment, "version": live.version,
                    "model_uri": version.model_uri, "service_code": version.service_code,
                    "service_class": service.service_class(version.service_code)}
        version_dir, home = await asyncio.to_thread(self._prepare_folder, live, account)
        token, token_id = await self._owner_token(live.owner, f"build of {live.deployment} "
                                                  f"v{live.version}", int(self.config.build_timeout) + 60)
        env = self._environment(account, home, {
            "MLFLOW_TRACKING_URI": self.config.tracking_url, "MLFLOW_TRACKING_TOKEN": token,
            "HIMALIA_BUILD_SPEC": json.dumps(spec), "HIMALIA_BUILD_FOLDER": str(version_dir),
        })
        out = self._log_file(live, "build")
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "himalia.hub.deployments.build", stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(version_dir),
                start_new_session=True, preexec_fn=account.child_setup())
            result, lines = None, []
            try:
                async with asyncio.timeout(self.config.build_timeout):
                    async for raw in proc.stdout:
                        line = raw.decode("utf-8", "replace")
                        if line.startswith(RESULT_MARKER):
                            result = json.loads(line[len(RESULT_MARKER):])
                            continue
                        out.write(raw)
                        out.flush()
                        lines.append(line)
                    code = await proc.wait()
            except TimeoutError:
                signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise VersionFailed(f"The build took longer than {self.config.build_timeout:.0f} s.") from None
        finally:
            out.close()
            await self.owners.revoke_token(live.owner, token_id)
        if code != 0 or result is None:
            raise VersionFailed(f"The build failed (exit {code}): {tail(''.join(lines))}")
        log.info("%s v%s built in %.1f s", live.deployment, live.version, time.monotonic() - started)
        return result

    async def start_processes(self, live: Live, account: Account) -> None:
        """Start every replica and wait until each is ready; VersionFailed if one is not."""
        if live.bento_tag is None:
            with self.db.session() as db:
                live.bento_tag = db.get(service.DeploymentVersion, live.id).bento_tag
        _, home = await asyncio.to_thread(self._prepare_folder, live, account)
        live.processes = [Replica(i) for i in range(live.replicas)]
        await asyncio.gather(*[self.start_replica(live, r, account, home) for r in live.processes])
        live.target.upstreams = [f"http://127.0.0.1:{r.port}" for r in live.processes]
        for replica in live.processes:
            self._spawn(self.supervise(live, replica, account, home))

    async def start_replica(self, live: Live, replica: Replica, account: Account, home: Path) -> None:
        replica.port = free_port()
        argv = [str(Path(sys.executable).with_name("bentoml")), "serve", live.bento_tag,
                "--host", "127.0.0.1", "--port", str(replica.port)]
        env = self._environment(account, home,
                                {"HIMALIA_MODEL_TAG": self.built(live).get("model_tag", "")})
        out = self._log_file(live, f"serve-{replica.index}")
        try:
            replica.proc = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=account.home if Path(account.home).is_dir() else "/",
                start_new_session=True, preexec_fn=account.child_setup())
        finally:
            out.close()
        remember(self.pids_dir, replica.proc.pid, f"--port\0{replica.port}")
        await self.wait_ready(live, replica)
        # Its workers are in process groups of their own, out of reach of the parent-death
        # signal: recorded too, so a manager that was killed has them ended by the next one.
        replica.workers = children(replica.proc.pid)
        for pid in replica.workers:
            remember(self.pids_dir, pid, live.bento_tag)

    async def wait_ready(self, live: Live, replica: Replica) -> None:
        url = f"http://127.0.0.1:{replica.port}/readyz"
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            if replica.proc.returncode is not None:
                raise VersionFailed(f"bentoml serve exited ({replica.proc.returncode}) while "
                                    f"starting: {tail(self.serve_log(live, replica))}")
            try:
                response = await self.http.get(url, timeout=2)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.25)
        raise VersionFailed(f"Not ready within {self.config.start_timeout:.0f} s: "
                            f"{tail(self.serve_log(live, replica))}")

    def serve_log(self, live: Live, replica: Replica) -> str:
        path = self.logs(live.deployment) / f"v{live.version}-serve-{replica.index}.log"
        try:
            return path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

    def build_file(self, live: Live) -> Path:
        """What the build gave (bento and model tags, the smoke request), kept where only the
        platform writes."""
        return self.logs(live.deployment) / f"v{live.version}-build.json"

    def built(self, live: Live) -> dict:
        try:
            return json.loads(self.build_file(live).read_text())
        except (OSError, ValueError):
            return {}

    async def smoke(self, live: Live) -> None:
        """The model's input example must get a 200 from every replica."""
        example = self.built(live).get("smoke")
        if example is None:
            log.info("%s v%s: no input example, no smoke request", live.deployment, live.version)
            return
        body = json.dumps(example).encode()
        for upstream in live.target.upstreams:
            try:
                response = await self.http.post(upstream + live.target.predict_path, content=body,
                                                 headers={"Content-Type": "application/json"},
                                                 timeout=self.config.smoke_timeout)
            except httpx.TimeoutException:
                raise VersionFailed(f"The smoke request with the model's input example got no "
                                    f"answer within {self.config.smoke_timeout:.0f} s.") from None
            if response.status_code != 200:
                raise VersionFailed(f"The smoke request with the model's input example got "
                                    f"{response.status_code}: {response.text[:500]}")

    async def supervise(self, live: Live, replica: Replica, account: Account, home: Path) -> None:
        """Restart a replica that dies while its version is live."""
        while True:
            code = await replica.proc.wait()
            if live.stopping or self.stopping or live.task is None:
                return
            self._end(replica)
            upstream = f"http://127.0.0.1:{replica.port}"
            live.target.upstreams = [u for u in live.target.upstreams if u != upstream]
            replica.restarts += 1
            log.warning("%s v%s process %s exited (%s); restarting it", live.deployment,
                        live.version, replica.index, code)
            await asyncio.sleep(min(2 ** replica.restarts, 30) if replica.restarts > 2 else 0)
            try:
                await self.start_replica(live, replica, account, home)
            except VersionFailed as e:
                log.warning("%s v%s process %s did not come back: %s", live.deployment,
                            live.version, replica.index, e)
                continue
            if not live.stopping:
                live.target.upstreams = [*live.target.upstreams, f"http://127.0.0.1:{replica.port}"]

    async def retire(self, live: Live) -> None:
        """Out of the table already: wait for its requests, then stop its processes."""
        if live.task is not None and not live.task.done():
            live.task.cancel()
        deadline = time.monotonic() + self.config.drain_timeout
        while live.target.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.stop_processes(live)
        self.live.pop(live.id, None)

    async def stop_processes(self, live: Live) -> None:
        live.stopping = True
        live.target.upstreams = []
        replicas = [r for r in live.processes if r.proc is not None]
        for replica in replicas:
            signal_group(replica.proc.pid, signal.SIGTERM)
        for replica in replicas:
            try:
                await asyncio.wait_for(replica.proc.wait(), 10)
            except asyncio.TimeoutError:
                pass
            self._end(replica)

    def _end(self, replica: Replica) -> None:
        """SIGKILL whatever is left of a replica: its group and its workers' groups."""
        for pid in (replica.proc.pid, *replica.workers):
            signal_group(pid, signal.SIGKILL)
            forget(self.pids_dir, pid)
        replica.workers = []

    # -- MLflow models ---------------------------------------------------------------------------
    async def check_model(self, owner: str, uri: str) -> dict:
        """Whether ``owner`` can read the MLflow model ``uri``: ``{"ok", "run_id"}`` or a refusal."""
        def refuse(status: int, message: str) -> dict:
            return {"ok": False, "status": status, "message": message}

        parsed = urlparse(uri)
        if parsed.scheme not in ("runs", "models"):
            return refuse(422, f"model_uri {uri!r}: only models in the platform's MLflow can be "
                               "deployed: runs:/<run id>/<path> or models:/<name>/<version>, "
                               "models:/<name>@<alias>, models:/<model id>.")
        cached = self._tokens.get(owner)
        if cached and time.monotonic() - cached[0] < 300:
            token = cached[1]
        else:
            token, _ = await self._owner_token(owner, "model checks of deployments", 600)
            self._tokens[owner] = (time.monotonic(), token)
        base = self.config.tracking_url.rstrip("/") + "/api/2.0/mlflow"
        headers = {"Authorization": f"Bearer {token}"}

        async def get(path: str, **params) -> dict | None:
            response = await self.http.get(f"{base}/{path}", params=params, headers=headers)
            if response.status_code in (401, 403):
                try:
                    raise PermissionError(response.json()["message"])
                except (ValueError, KeyError):
                    # MLflow's own check answers a bare 403 for an object it cannot find.
                    return None
            if response.status_code in (400, 404):
                return None
            response.raise_for_status()
            return response.json()

        path = (parsed.netloc + parsed.path).strip("/")
        try:
            if parsed.scheme == "runs":
                run_id, _, artifact = path.partition("/")
                run = await get("runs/get", run_id=run_id)
                if run is None:
                    return refuse(404, f"model_uri {uri!r}: MLflow has no run {run_id!r} that "
                                       f"{owner} may read.")
                if not artifact:
                    return refuse(422, f"model_uri {uri!r}: name the model's path in the run, "
                                       f"e.g. runs:/{run_id}/model.")
                if not await self._run_has_model(get, run, run_id, artifact):
                    return refuse(404, f"model_uri {uri!r}: run {run_id} has no model at {artifact!r}.")
                return {"ok": True, "run_id": run_id, "features": _run_features(run)}
            if path.startswith("m-") and "/" not in path:
                model = await get(f"logged-models/{quote(path)}")
                if model is None:
                    return refuse(404, f"model_uri {uri!r}: MLflow has no logged model {path!r}.")
                run_id = model["model"]["info"].get("source_run_id")
                return {"ok": True, "run_id": run_id, "features": await self._features_of(get, run_id)}
            name, _, version = path.partition("/")
            if "@" in name and not version:
                name, _, alias = name.partition("@")
                found = await get("registered-models/alias", name=name, alias=alias)
            elif version == "latest":
                found = await get("registered-models/get", name=name)
                latest = (found or {}).get("registered_model", {}).get("latest_versions") or []
                found = {"model_version": max(latest, key=lambda v: int(v["version"]))} if latest else None
            elif version.isdigit():
                found = await get("model-versions/get", name=name, version=version)
            else:
                return refuse(422, f"model_uri {uri!r}: use models:/<name>/<version>, "
                                   "models:/<name>/latest or models:/<name>@<alias>.")
            if found is None:
                return refuse(404, f"model_uri {uri!r}: the registry has no such model version.")
            run_id = found["model_version"].get("run_id")
            return {"ok": True, "run_id": run_id, "features": await self._features_of(get, run_id)}
        except PermissionError as e:
            return refuse(403, f"model_uri {uri!r}: {owner} may not read it ({e}).")
        except (httpx.HTTPError, ValueError, KeyError) as e:
            return refuse(502, f"MLflow could not be asked about {uri!r} ({type(e).__name__}).")

    async def _features_of(self, get, run_id: str | None) -> list[str] | None:
        run = await get("runs/get", run_id=run_id) if run_id else None
        return _run_features(run) if run else None

    async def _run_has_model(self, get, run: dict, run_id: str, artifact: str) -> bool:
        """A model at ``artifact`` of the run: a logged model of that name (MLflow 3) or an
        ``MLmodel`` file under that artifact path."""
        for output in (run.get("run", {}).get("outputs", {}) or {}).get("model_outputs", []) or []:
            model = await get(f"logged-models/{quote(output.get('model_id', ''))}")
            if model and model["model"]["info"].get("name") == artifact:
                return True
        listed = await get("artifacts/list", run_id=run_id, path=artifact)
        return any(f.get("path", "").endswith("MLmodel") for f in (listed or {}).get("files", []))

    # -- control socket --------------------------------------------------------------------------
    async def serve_control(self) -> asyncio.AbstractServer:
        return await control_socket(Path(self.config.socket), self.handle, self.config.files_gid)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                message = json.loads(await reader.readline() or b"{}")
            except ValueError:
                message = {}
            op = message.get("op")
            if op == "wake":
                await self.reconcile()
                self.wakeup.set()
                reply = {"ok": True}
            elif op == "check_model":
                try:
                    reply = await self.check_model(str(message.get("owner")),
                                                   str(message.get("model_uri", "")))
                except (AccountError, httpx.HTTPError) as e:
                    reply = {"ok": False, "status": 503,
                             "message": f"The hub could not give a token to check the model ({e})."}
            else:
                reply = {"ok": False, "status": 400, "message": f"unknown op {op!r}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def main() -> None:
    logging.basicConfig(level=os.environ.get("HIMALIA_LOG_LEVEL", "INFO").upper(),
                        format="[%(asctime)s %(name)s %(levelname)s] %(message)s")
    # Not a line per readiness poll and hub call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if "--supervised" not in sys.argv[1:]:
        sys.exit(keep_running([sys.executable, "-m", "himalia.hub.deployments.manager", "--supervised"],
                              "the deployment manager"))
    config = ManagerConfig(**json.loads(os.environ["HIMALIA_DEPLOYMENTS"]))
    port = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port
    manager = Manager(config, os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], port)
    # uvloop: the router takes about a sixth less CPU per proxied request than on asyncio's loop.
    uvloop.run(manager.main())


if __name__ == "__main__":
    main()
