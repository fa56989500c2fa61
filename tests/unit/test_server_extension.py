"""The himalia server extension, served by a real ``jupyter server`` on 127.0.0.1.

Each server runs in its own process group, on a free port, with every Jupyter directory in a
temporary folder; the platform API client is swapped through ``client_factory`` in the config.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from himalia_testing import JupyterProcess, free_port, jupyter_app

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


def closed_port_url() -> str:
    """A URL nothing listens on, so connecting to it is refused at once."""
    return f"http://127.0.0.1:{free_port()}/services/himalia/"


@contextmanager
def jupyter_server(tmp: Path, config: str, env: dict[str, str]) -> Iterator[JupyterProcess]:
    """Run ``jupyter server`` with the himalia extension and ``config``; stop its group after."""
    extension = 'c.ServerApp.jpserver_extensions = {"himalia.extension": True}\n'
    with jupyter_app(tmp, "jupyter_server", extension + config, env) as server:
        yield server


def spawner_kernel_settings() -> str:
    """The kernel settings among the arguments the hub starts every server with, as config."""
    from himalia.hub.config import HimaliaConfig
    from himalia.hub.hubconfig import Runtime, build_hub_config

    cfg = HimaliaConfig(state_dir="/nonexistent")
    args = build_hub_config(cfg, Runtime(hub_port=1, api_port=2, proxy_api_port=3), as_root=False).Spawner.args
    lines = []
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        if key.startswith(("ServerApp.kernel_spec", "MappingKernelManager.")):
            lines.append(f"c.{key} = {value!r}")
    assert len(lines) == 2, args
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fake_platform_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    config = FAKE_PLATFORM + spawner_kernel_settings()
    with jupyter_server(tmp_path_factory.mktemp("fake"), config, {}) as server:
        yield server


def test_status_returns_identity_and_health(fake_platform_server: JupyterProcess) -> None:
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
    fake_platform_server: JupyterProcess, token: str | None
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


def test_the_himalia_kernel_is_the_default_and_stands_in_for_plain_python(
    fake_platform_server: JupyterProcess,
) -> None:
    """With the kernel settings the hub gives every server (hubconfig's Spawner.args)."""
    from himalia_testing import Kernel

    specs = fake_platform_server.get("api/kernelspecs", fake_platform_server.token).json()
    assert specs["default"] == "himalia"
    assert "python3" not in specs["kernelspecs"], "the Launcher must not offer a kernel without magics"
    # A notebook written for the plain Python kernel still opens, with the platform's magics.
    kernel = Kernel(fake_platform_server.url, fake_platform_server.token, kernel_name="python3")
    try:
        out = kernel.execute("%himalia --help")
        assert out["error"] is None, out
        assert "%himalia" in out["stdout"]
    finally:
        kernel.close()
