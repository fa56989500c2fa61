"""The himalia sidebar in a real JupyterLab, driven in headless Chromium with Playwright.

JupyterLab runs as its own process group on a free port, every Jupyter directory in a temporary
folder, and the platform API client replaced by ``fake_platform.FakeClient`` through the config.
The labextension is the one installed into the environment (``pip install -e .``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from himalia_testing import OFFLINE_LAB, jupyter_app
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent

FAKE_PLATFORM = """
import fake_platform
c.HimaliaExtensionApp.client_factory = fake_platform.FakeClient
"""
TAB = '.jp-SideBar .lm-TabBar-tab[data-id="himalia-sidebar"]'
PANEL = "#himalia-sidebar"


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@contextmanager
def jupyter_lab(tmp: Path, config: str) -> Iterator[str]:
    """Run ``jupyter lab``; yield its ``/lab?token=`` URL; stop its process group after."""
    # For `import fake_platform` in the config file.
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    with jupyter_app(tmp, "jupyterlab", OFFLINE_LAB + config, {"PYTHONPATH": pythonpath}) as lab:
        yield f"{lab.url}lab?token={lab.token}"


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
