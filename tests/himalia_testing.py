"""Helpers that run the real platform on 127.0.0.1: ``himalia up`` with its proxy, hub,
platform API and spawned servers, in temporary state directories on free ports.

Each fixture stops exactly the process groups it started. PostgreSQL- and Redis-backed
variants skip with a reason when those servers are absent, unless ``HIMALIA_REQUIRE_SERVICES``
is set (CI sets it), in which case they fail.
"""

from __future__ import annotations

import http.server
import json
import os
import pwd
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("HIMALIA_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
STRONG = "correct-Horse-battery-9"


def require_service(reason: str) -> None:
    """Skip (locally) or fail (CI) when a real backing service is missing."""
    if os.environ.get("HIMALIA_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def himalia_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the ``himalia`` command with ``args``; its output is captured."""
    return subprocess.run([sys.executable, "-m", "himalia.hub", *args], capture_output=True,
                          text=True, timeout=120)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


API_PREFIX = "/services/himalia/api/v1/"


@contextmanager
def mlflow_client(tracking_uri: str, *, token: str | None = None,
                  experiment: str | None = None) -> Iterator[None]:
    """Point this process's MLflow client at ``tracking_uri`` (with ``token``, logging to
    ``experiment``, made when missing), and put back MLflow's global state exactly as it was
    afterwards (its tracking URI and active experiment are module globals: a value left behind
    would redirect every later test in the process)."""
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_NAME")
    saved = (utils._tracking_uri, fluent._active_experiment_id, {k: os.environ.get(k) for k in keys})
    try:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        fluent._active_experiment_id = None
        if token is not None:
            os.environ["MLFLOW_TRACKING_TOKEN"] = token
        if experiment is not None:
            os.environ["MLFLOW_EXPERIMENT_NAME"] = experiment
            client = mlflow.MlflowClient()
            if client.get_experiment_by_name(experiment) is None:
                client.create_experiment(experiment)
        yield
    finally:
        utils._tracking_uri, fluent._active_experiment_id, env = saved
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ScriptedAPI(http.server.BaseHTTPRequestHandler):
    """A scripted stand-in of the platform's HTTP API, for unit tests of its clients (the SDK,
    the CLI). ``script[(METHOD, path)]`` (``path`` without :data:`API_PREFIX`) is a list of
    ``(status, body)`` replies, one per call, the last one repeating; a body is JSON, text,
    bytes (Parquet) or a function of the request's JSON. Every request is recorded in ``seen``
    as ``(method, path, query, json, authorization)``."""

    script: dict = {}
    seen: list = []

    def _answer(self):
        url = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = url.path.removeprefix(API_PREFIX)
        ScriptedAPI.seen.append((self.command, path, parse_qs(url.query), body,
                                 self.headers.get("authorization")))
        replies = ScriptedAPI.script.get((self.command, path))
        status, reply = (replies.pop(0) if len(replies) > 1 else replies[0]) if replies else (
            404, {"status": 404, "message": f"{path} does not exist"})
        reply = reply(body) if callable(reply) else reply
        kind = {bytes: "application/vnd.apache.parquet", str: "text/plain"}.get(type(reply),
                                                                                "application/json")
        data = reply if isinstance(reply, bytes) else (
            reply.encode() if isinstance(reply, str) else json.dumps(reply).encode())
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args):
        pass


@contextmanager
def scripted_api() -> Iterator[str]:
    """:class:`ScriptedAPI` on a free port, with an empty script; yields its base URL."""
    ScriptedAPI.script, ScriptedAPI.seen = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def kill_group(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left of it."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class PGDatabase:
    """A throw-away database on the local PostgreSQL server."""

    def __init__(self, name: str):
        self.name = name
        self.url = f"{PG_DSN}/{name}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{PG_DSN}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> "PGDatabase":
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def drop_role(self, role: str) -> None:
        """Drop a role made for this database (after the database, which holds its objects)."""
        self._admin(f'DROP ROLE IF EXISTS "{role}"')


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect(f"{PG_DSN}/postgres", connect_timeout=3).close()
    except Exception:
        return False
    return True


def reachable_temp_dir(prefix: str) -> Path:
    """A new private folder whose path other accounts can pass through.

    pytest's own temporary folders sit in a root-only folder; the platform's services and the
    tests' unprivileged accounts must reach their state directories and the proxy.
    """
    return Path(tempfile.mkdtemp(prefix=prefix))


class Platform:
    """One running ``himalia up``: its URL, admin token, and helpers that act like people.

    ``state_dir=None`` makes a fresh state directory that :meth:`close` removes. ``run_as``
    runs ``himalia up`` as that (unprivileged) Unix account instead of the test's own.
    """

    def __init__(self, state_dir: Path | None, proxy_bin: Path, db_url: str = "",
                 api_db_url: str = "", run_as: str | None = None):
        self.owns_state_dir = state_dir is None
        self.state_dir = reachable_temp_dir("himalia-state-") if state_dir is None else state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url
        self.api_db_url = api_db_url
        self.proxy_bin = proxy_bin
        self.run_as = run_as
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.admin_password = ""
        self.user_prefix = f"ht{secrets.token_hex(2)}-"
        self._lines: queue.Queue[str] = queue.Queue()

    # -- process control -------------------------------------------------------------------
    def write_config(self, *lines: str, **extra) -> None:
        """``himalia_config.py``: test defaults, ``HimaliaConfig`` settings and raw ``lines``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = [
            f"c.HimaliaConfig.system_user_prefix = {self.user_prefix!r}",
            f"c.HimaliaConfig.service_user = {self.user_prefix + 'svc'!r}",
            "c.HimaliaConfig.cull_idle_timeout = 600",
        ]
        config += [f"c.HimaliaConfig.{k} = {v!r}" for k, v in extra.items()]
        config += list(lines)
        path = self.state_dir / "himalia_config.py"
        path.write_text("\n".join(config) + "\n")
        os.chmod(path, 0o600)
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            for owned in (self.state_dir, path):
                os.chown(owned, account.pw_uid, account.pw_gid)

    def _as_account(self):
        account = pwd.getpwnam(self.run_as)

        def demote():
            os.initgroups(account.pw_name, account.pw_gid)
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

        return account, demote

    def start(self, timeout: float = 120.0, env: dict | None = None) -> "Platform":
        if not (self.state_dir / "himalia_config.py").exists():
            self.write_config()
        argv = [sys.executable, "-m", "himalia.hub", "up", "--state-dir", str(self.state_dir),
                "--port", str(self.port)]
        if self.db_url:
            argv += ["--db-url", self.db_url]
        if self.api_db_url:
            argv += ["--api-db-url", self.api_db_url]
        run_env = dict(os.environ)
        run_env["PATH"] = f"{self.proxy_bin}{os.pathsep}{run_env['PATH']}"
        run_env.update(env or {})
        preexec = None
        if self.run_as:
            account, preexec = self._as_account()
            run_env.update(HOME=account.pw_dir, USER=account.pw_name)
        self.output = []
        self.admin_password = ""
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env,
            start_new_session=True, preexec_fn=preexec, cwd=str(self.state_dir),
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"himalia up not ready in {timeout}s:\n{''.join(self.output)}") from None
            if line is None:
                raise AssertionError(f"himalia up exited:\n{''.join(self.output)}\n{self.hub_log()}")
            if "one-time password:" in line:
                self.admin_password = line.rsplit(":", 1)[1].strip()
            if line.startswith("Admin API token:"):
                return self

    def processes(self) -> list:
        """``himalia up`` and every process under it (hub, proxy, services, servers, kernels)."""
        import psutil

        if self.proc is None:
            return []
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def runtime(self) -> dict:
        return json.loads((self.state_dir / "run" / "runtime.json").read_text())

    def close(self) -> None:
        """Stop the platform, remove the Unix accounts it made, and its state directory if ours."""
        self.stop()
        self.remove_unix_accounts()
        if self.owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop(self) -> int | None:
        """Stop ``himalia up`` as a person would (SIGTERM) and make sure nothing is left."""
        if self.proc is None:
            return None
        pids = self.runtime().get("pids", {}) if (self.state_dir / "run" / "runtime.json").exists() else {}
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            code = self.proc.wait(90)
        except subprocess.TimeoutExpired:
            code = None
        for pid in [self.proc.pid, pids.get("hub"), pids.get("proxy")]:
            kill_group(pid, timeout=5)
        self.proc = None
        return code

    def hub_log(self) -> str:
        path = self.state_dir / "logs" / "hub.log"
        return path.read_text()[-6000:] if path.exists() else ""

    @property
    def admin_token(self) -> str:
        return (self.state_dir / "admin-token").read_text().strip()

    # -- hub REST API as the admin ---------------------------------------------------------
    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)

    def create_user(self, name: str, role: str = "scientist") -> str:
        """Invite ``name`` with ``role`` as the admin and accept the invitation as that person;
        return the password they chose."""
        r = self.accept_invitation(self.invite(name, role), STRONG)
        assert r.status_code == 200, r.text[-500:]
        return STRONG

    def submit_form(self, path: str, data: dict, *, action: str | None = None,
                    base: str | None = None, session: requests.Session | None = None):
        """Open a hub page as a browser would, then submit its form with the page's XSRF token;
        return ``(session, response)``."""
        s = session or requests.Session()
        base = base or self.url
        s.get(f"{base}{path}", timeout=30)
        r = s.post(f"{base}{action or path}", data={**data, "_xsrf": s.cookies.get("_xsrf", "")},
                   timeout=30)
        return s, r

    def role_of(self, name: str) -> str | None:
        """The platform role the hub gives ``name`` (admin, scientist, viewer or None)."""
        r = self.api("GET", f"/users/{name}/role")
        assert r.status_code == 200, r.text
        return r.json()["role"]

    def set_role(self, name: str, role: str | None) -> None:
        """Change ``name``'s platform role as the admin (None: no role)."""
        r = self.api("PUT", f"/users/{name}/role", json={"role": role})
        assert r.status_code == 200, r.text

    def signup(self, name: str, password: str) -> requests.Response:
        return self.submit_form("/hub/signup", {"username": name, "signup_password": password,
                                                "signup_password_confirmation": password})[1]

    def invite(self, name: str, role: str = "scientist", **body) -> str:
        """Invite ``name`` with ``role`` through the hub REST API as the admin; return the
        invitation link's path (``/hub/invite/<token>``). ``body`` adds fields (``expires_in``)."""
        r = self.api("POST", "/invitations", json={"username": name, "role": role, **body})
        assert r.status_code == 201, r.text
        return r.json()["url"]

    def accept_invitation(self, url_path: str, password: str) -> requests.Response:
        """Open an invitation link as the invitee would and choose ``password`` there."""
        return self.submit_form(url_path, {"password": password, "password_confirmation": password})[1]

    def try_login(self, name: str, password: str, **kwargs) -> requests.Response:
        """One login through the hub's form (``submit_form`` options); the response carries
        ``session`` and ``logged_in``."""
        s, r = self.submit_form("/hub/login", {"username": name, "password": password},
                                action="/hub/login?next=/hub/home", **kwargs)
        r.session = s
        r.logged_in = "jupyterhub-session-id" in s.cookies
        return r

    def login(self, name: str, password: str) -> requests.Session:
        """Log in through the hub's login form; the session carries the hub cookie."""
        r = self.try_login(name, password)
        r.raise_for_status()
        assert r.logged_in, f"login as {name} failed: {r.url}"
        s = r.session
        s.headers["X-XSRFToken"] = s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf", "")
        s.himalia_user = name
        return s

    def user_token(self, session: requests.Session, **body) -> dict:
        """A hub API token the logged-in user makes for themselves."""
        name = session.himalia_user
        r = session.post(f"{self.url}/hub/api/users/{name}/tokens", json=body or {"note": "tests"}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()

    def spawn(self, session: requests.Session, options: dict | None = None, timeout: float = 90.0) -> str:
        """Start the user's server through the REST API and wait until it is ready."""
        name = session.himalia_user
        r = session.post(f"{self.url}/hub/api/users/{name}/server", json=options or {}, timeout=60)
        assert r.status_code in (201, 202), f"{r.status_code} {r.text}"
        wait_for(lambda: (self.api("GET", f"/users/{name}").json().get("servers") or {}).get("", {}).get("ready"),
                 timeout, what=f"server of {name}")
        return f"{self.url}/user/{name}/"

    def stop_server(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204), r.text
        wait_for(lambda: not (self.api("GET", f"/users/{name}").json().get("servers")), 60,
                 what=f"server of {name} to stop")

    def unix_accounts(self) -> list[str]:
        return [p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(self.user_prefix)]

    def remove_unix_accounts(self) -> None:
        for name in self.unix_accounts():
            subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)


def browser_log_in(page, platform: Platform, name: str, password: str, timeout_ms: int = 30_000) -> None:
    """Fill and submit the hub's login form in a Playwright ``page``; wait until let in."""
    import re

    from playwright.sync_api import expect

    page.goto(f"{platform.url}/hub/login")
    page.locator('input[name="username"]').fill(name)
    page.locator('input[name="password"]').fill(password)
    page.locator("#login_submit").click()
    expect(page).not_to_have_url(re.compile(r"/hub/login"), timeout=timeout_ms)
    cookies = {c["name"] for c in page.context.cookies()}
    assert "jupyterhub-session-id" in cookies, f"login as {name} failed at {page.url}"


class Person:
    """Someone with a platform role and a hub token, calling the platform API.

    Without ``token`` the admin makes the hub user ``name``, gives them ``role`` and a token.
    """

    def __init__(self, platform: "Platform", name: str, role: str | None = None, *,
                 token: str | None = None):
        self.platform, self.name = platform, name
        if token is None:
            assert platform.api("POST", f"/users/{name}").status_code == 201
            if role:
                platform.set_role(name, role)
            r = platform.api("POST", f"/users/{name}/tokens", json={"note": "tests"})
            assert r.status_code == 201, r.text
            token = r.json()["token"]
        self.token = token
        self.headers = {"Authorization": f"token {token}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """``path`` under the platform API's ``/api/v1``."""
        return requests.request(method, f"{self.platform.url}/services/himalia/api/v1{path}",
                                headers=self.headers, timeout=60, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs):
        r = self.call(method, path, **kwargs)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:800]}"
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r


class KernelDied(AssertionError):
    """The kernel died (and its server restarts it) before it answered."""


class Kernel:
    """A kernel in a user's server, driven through the proxy (REST + websocket)."""

    def __init__(self, server_url: str, token: str, kernel_name: str = "himalia",
                 notebook: str | None = None):
        """``notebook``: start it as that notebook's kernel (a session), as JupyterLab does."""
        import websocket

        self.server_url = server_url
        self.headers = {"Authorization": f"token {token}"}
        if notebook:
            r = requests.post(f"{server_url}api/sessions", headers=self.headers, timeout=60,
                              json={"path": notebook, "type": "notebook", "name": notebook,
                                    "kernel": {"name": kernel_name}})
            assert r.status_code == 201, f"{r.status_code} {r.text}"
            self.id = r.json()["kernel"]["id"]
        else:
            r = requests.post(f"{server_url}api/kernels", json={"name": kernel_name},
                              headers=self.headers, timeout=60)
            assert r.status_code == 201, f"{r.status_code} {r.text}"
            self.id = r.json()["id"]
        ws_url = server_url.replace("http://", "ws://") + f"api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=90)

    def execute(self, code: str, timeout: float = 90.0) -> dict:
        """Run ``code``; return its text output, rich outputs and error (if any).

        Raises :class:`KernelDied` when the server reports the kernel dead or restarting.
        """
        import websocket

        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False},
        }))
        result = {"stdout": "", "data": [], "error": None}
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            # The server pings every so often; answering pings must not stretch the deadline.
            self.ws.settimeout(remaining)
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise KernelDied(f"the server closed the kernel's channels while running {code!r}")
            if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                continue
            msg = json.loads(frame.data)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                # The server says so about the kernel itself, with no parent message.
                raise KernelDied(f"the kernel died ({content['execution_state']}) while running {code!r}")
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream":
                result["stdout"] += content["text"]
            elif kind in ("display_data", "execute_result"):
                result["data"].append(content["data"])
            elif kind == "error":
                result["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return result
        raise AssertionError(f"no reply to {code!r} in {timeout}s")

    def close(self) -> None:
        self.ws.close()
        requests.delete(f"{self.server_url}api/kernels/{self.id}", headers=self.headers, timeout=30)

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class JupyterProcess:
    """A running Jupyter application: its URL, its token and the file its output goes to."""

    url: str
    token: str
    log: Path

    def get(self, path: str, token: str | None = None):
        import httpx

        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=30)


#: JupyterLab with himalia's server extension that asks for nothing outside 127.0.0.1: no news
#: feed, no update check, no PyPI search (the settings the hub gives every server).
OFFLINE_LAB = """
c.ServerApp.jpserver_extensions = {"himalia.extension": True}
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
"""


@contextmanager
def jupyter_app(tmp: Path, module: str, config: str, env: dict[str, str] | None = None) -> Iterator[JupyterProcess]:
    """Run ``python -m <module>`` (jupyter_server, jupyterlab) with ``config`` on a free port,
    every Jupyter directory under ``tmp``; stop exactly its process group afterwards."""
    for name in ("root", "config", "data", "runtime"):
        (tmp / name).mkdir(parents=True)
    config_file = tmp / "jupyter_app_config.py"
    config_file.write_text(config)
    token = secrets.token_hex(16)
    port = free_port()
    app_env = {k: v for k, v in os.environ.items() if k not in {"HIMALIA_API_URL", "JUPYTERHUB_API_TOKEN"}}
    app_env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), **(env or {}))
    log = tmp / f"{module}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, f"--config={config_file}", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--ServerApp.root_dir={tmp / 'root'}", f"--IdentityProvider.token={token}"],
            env=app_env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    app = JupyterProcess(url=f"http://127.0.0.1:{port}/", token=token, log=log)

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{module} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return app.get("api/status", token).status_code == 200
        except Exception:
            return False

    try:
        wait_for(answers, what=f"{module}, output in {log}")
        yield app
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class DockerEngine:
    """A Docker engine of the tests' own: ``dockerd`` (as root) in a new data root, execution
    root and socket, with no bridge, no iptables rules and no masquerading, so containers use
    the host network only. :meth:`stop` ends exactly that daemon (by its process group) and
    removes its folders. Images come from ``images/build.sh``, whose cache loads them fast.
    """

    def __init__(self):
        self.root = reachable_temp_dir("himalia-docker-")
        self.host = f"unix://{self.root / 'docker.sock'}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, timeout: float = 90.0) -> "DockerEngine":
        dockerd = shutil.which("dockerd")
        if dockerd is None or os.geteuid() != 0:
            require_service("dockerd is not installed (tests/run.sh installs docker.io) or not root")
        argv = [dockerd, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "--host", self.host,
                "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false"]
        self.log = open(self.root / "dockerd.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited:\n{self.daemon_log()}")
            return self.docker("version", check=False).returncode == 0

        try:
            wait_for(answers, timeout=timeout, what="dockerd to answer")
        except AssertionError:
            self.stop()
            raise
        return self

    def daemon_log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env(),
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
        return result

    def build_images(self, *targets: str) -> list[str]:
        """``images/build.sh --local-base`` against this engine; the tags it made."""
        result = subprocess.run(["bash", str(REPO / "images" / "build.sh"), "--local-base", *targets],
                                capture_output=True, text=True, env=self.env(), timeout=1800)
        assert result.returncode == 0, f"images/build.sh failed:\n{result.stderr[-4000:]}"
        return result.stdout.split()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                # Containers still running are stopped by the daemon as it shuts down.
                for cid in self.docker("ps", "-aq", check=False).stdout.split():
                    self.docker("rm", "-f", cid, check=False)
            kill_group(self.proc.pid, timeout=60)
            self.proc.wait(10)
            self.log.close()
            self.proc = None
        # The daemon leaves its network namespace file (and, if killed, overlay mounts) mounted.
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts]
        for point in sorted((p for p in points if p.startswith(str(self.root) + "/")), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
