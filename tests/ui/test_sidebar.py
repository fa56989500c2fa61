"""The himalia sidebar in a real JupyterLab, driven in headless Chromium with Playwright.

JupyterLab runs as its own process group on a free port, every Jupyter directory in a temporary
folder, and the platform API client replaced by ``fake_platform.FakeClient`` through the config.
The labextension is the one installed into the environment (``pip install -e .``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from himalia_testing import free_port, require_service, wait_for
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HERE = Path(__file__).resolve().parent

# Nothing outside 127.0.0.1 is asked for: no news feed, no update check, no PyPI search.
OFFLINE_LAB = """
c.ServerApp.jpserver_extensions = {"himalia.extension": True}
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
"""
FAKE_PLATFORM = """
import fake_platform
c.HimaliaExtensionApp.client_factory = fake_platform.FakeClient
"""
TAB = '.jp-SideBar .lm-TabBar-tab[data-id="himalia-sidebar"]'
PANEL = "#himalia-sidebar"


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    if not CHROMIUM.exists():
        require_service("Debian's chromium is not installed: apt-get install -y chromium")
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@contextmanager
def jupyter_lab(tmp: Path, config: str) -> Iterator[str]:
    """Run ``jupyter lab``; yield its ``/lab?token=`` URL; stop its process group after."""
    for name in ("root", "config", "data", "runtime"):
        (tmp / name).mkdir(parents=True)
    config_file = tmp / "jupyter_lab_config.py"
    config_file.write_text(OFFLINE_LAB + config)
    token = secrets.token_hex(16)
    port = free_port()
    lab_env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HIMALIA_API_URL", "JUPYTERHUB_API_TOKEN"}
    }
    lab_env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        # For `import fake_platform` in the config file.
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), lab_env.get("PYTHONPATH")])),
    )
    log = tmp / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                f"--config={config_file}",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={tmp / 'root'}",
                f"--IdentityProvider.token={token}",
            ],
            env=lab_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: serves(proc, base, token, log), what=f"jupyter lab, output in {log}")
        yield f"{base}lab?token={token}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def serves(proc: subprocess.Popen, base: str, token: str, log: Path) -> bool:
    """Whether JupyterLab answers an authenticated request yet; fails if it has exited."""
    if proc.poll() is not None:
        pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()}")
    try:
        response = httpx.get(base + "api/status", headers={"Authorization": f"token {token}"})
    except httpx.TransportError:
        return False
    return response.status_code == 200


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def open_sidebar(page: Page, url: str) -> Locator:
    """Load JupyterLab, click the himalia tab and return the panel's locator."""
    page.goto(url)
    page.locator(TAB).click()
    panel = page.locator(PANEL)
    panel.wait_for(state="visible")
    return panel


def test_sidebar_shows_user_roles_and_service_health(page: Page, tmp_path: Path) -> None:
    with jupyter_lab(tmp_path, FAKE_PLATFORM) as url:
        panel = open_sidebar(page, url)

        expect(panel.locator(".jp-himalia-user")).to_have_text("ada")
        expect(panel.locator(".jp-himalia-role")).to_have_text(["scientist"])
        hub = panel.locator('tr[data-service="hub"]')
        expect(hub).to_contain_text("ok")
        expect(panel.locator('tr[data-service="service:mlflow"]')).to_contain_text("down")
        expect(panel.locator(".jp-himalia-health-heading")).to_contain_text("down")
        first_check = hub.get_attribute("title")
        assert first_check
        page.screenshot(path=str(tmp_path / "sidebar.png"))

        panel.get_by_role("button", name="Refresh").click()

        expect(hub).not_to_have_attribute("title", first_check)
        expect(panel.locator(".jp-himalia-error")).to_have_count(0)


def test_sidebar_explains_an_unconfigured_platform(page: Page, tmp_path: Path) -> None:
    with jupyter_lab(tmp_path, "") as url:
        panel = open_sidebar(page, url)

        expect(panel.locator(".jp-himalia-error")).to_contain_text("HIMALIA_API_URL")
        expect(panel.locator(".jp-himalia-user")).to_have_count(0)
