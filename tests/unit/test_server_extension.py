"""The himalia server extension, served by a real ``jupyter server`` on 127.0.0.1.

Each server runs in its own process group, on a free port, with every Jupyter directory in a
temporary folder; the platform API client is swapped through ``client_factory`` in the config.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from himalia_testing import free_port, wait_for

STATUS = "himalia/api/status"

FAKE_PLATFORM = """
class FakeClient:
    async def awhoami(self):
        return {"name": "ada", "roles": ["scientist"], "scopes": ["read:jobs"]}

    async def ahealth(self):
        return {
            "ok": False,
            "services": {
                "hub": {"ok": True, "detail": "HTTP 200"},
                "service:mlflow": {"ok": False, "detail": "ConnectError"},
            },
        }

c.HimaliaExtensionApp.client_factory = FakeClient
"""

SLOW_PLATFORM = """
import asyncio

class SlowClient:
    async def awhoami(self):
        await asyncio.sleep(30)

    async def ahealth(self):
        await asyncio.sleep(30)

c.HimaliaExtensionApp.client_factory = SlowClient
c.HimaliaExtensionApp.request_timeout = 0.5
"""


@dataclass
class Server:
    """A running jupyter server: its URL, its token and the file its output goes to."""

    url: str
    token: str
    log: Path

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=30)


def closed_port_url() -> str:
    """A URL nothing listens on, so connecting to it is refused at once."""
    return f"http://127.0.0.1:{free_port()}/services/himalia/"


@contextmanager
def jupyter_server(tmp: Path, config: str, env: dict[str, str]) -> Iterator[Server]:
    """Run ``jupyter server`` with the himalia extension and ``config``; stop its group after."""
    for name in ("root", "config", "data", "runtime"):
        (tmp / name).mkdir(parents=True)
    config_file = tmp / "jupyter_server_config.py"
    config_file.write_text(
        'c.ServerApp.jpserver_extensions = {"himalia.extension": True}\n' + config
    )
    token = secrets.token_hex(16)
    port = free_port()
    server_env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HIMALIA_API_URL", "JUPYTERHUB_API_TOKEN"}
    }
    server_env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        **env,
    )
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                f"--config={config_file}",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={tmp / 'root'}",
                f"--IdentityProvider.token={token}",
            ],
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(url=f"http://127.0.0.1:{port}/", token=token, log=log)
    try:
        wait_for(lambda: answers(proc, server), what=f"jupyter server, output in {log}")
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def answers(proc: subprocess.Popen, server: Server) -> bool:
    """Whether the server answers an authenticated request yet; fails if it has exited."""
    if proc.poll() is not None:
        pytest.fail(f"jupyter server exited with {proc.returncode}:\n{server.log.read_text()}")
    try:
        return server.get("api/status", server.token).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def fake_platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with jupyter_server(tmp_path_factory.mktemp("fake"), FAKE_PLATFORM, {}) as server:
        yield server


def test_status_returns_identity_and_health(fake_platform_server: Server) -> None:
    response = fake_platform_server.get(STATUS, fake_platform_server.token)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "whoami": {"name": "ada", "roles": ["scientist"], "scopes": ["read:jobs"]},
        "health": {
            "ok": False,
            "services": {
                "hub": {"ok": True, "detail": "HTTP 200"},
                "service:mlflow": {"ok": False, "detail": "ConnectError"},
            },
        },
    }


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_status_refuses_unauthenticated_requests(
    fake_platform_server: Server, token: str | None
) -> None:
    response = fake_platform_server.get(STATUS, token)

    assert response.status_code in {401, 403}
    assert "whoami" not in response.text


def test_unconfigured_platform_answers_503_with_the_missing_setting(tmp_path: Path) -> None:
    with jupyter_server(tmp_path, "", {}) as server:
        response = server.get(STATUS, server.token)

    assert response.status_code == 503
    assert list(response.json()) == ["message"]
    assert "HIMALIA_API_URL" in response.json()["message"]


def test_unreachable_platform_answers_503_without_leaking_the_token(tmp_path: Path) -> None:
    hub_token = "hub-token-" + secrets.token_hex(8)
    env = {"HIMALIA_API_URL": closed_port_url(), "JUPYTERHUB_API_TOKEN": hub_token}
    with jupyter_server(tmp_path, "", env) as server:
        response = server.get(STATUS, server.token)
        log = server.log.read_text()

    assert response.status_code == 503
    body = response.json()
    assert list(body) == ["message"]
    assert env["HIMALIA_API_URL"] in body["message"]
    assert "Traceback" not in response.text
    assert hub_token not in response.text
    assert hub_token not in log
    assert "himalia status unavailable: " in log


def test_platform_that_does_not_answer_in_time_gives_503(tmp_path: Path) -> None:
    with jupyter_server(tmp_path, SLOW_PLATFORM, {}) as server:
        started = time.monotonic()
        response = server.get(STATUS, server.token)
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json() == {"message": "The himalia platform API did not answer within 0.5 s."}
    assert elapsed < 10
