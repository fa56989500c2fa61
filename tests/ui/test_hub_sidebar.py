"""The himalia sidebar end to end, through the real hub, in headless Chromium with Playwright.

No fakes: ``himalia up`` (proxy, hub, platform API) runs on 127.0.0.1 (``sqlite_platform``), a
person logs in through the hub's login form, starts a ``cpu`` server from the spawn page's
profile form, and JupyterLab's himalia panel asks the platform API, through the server
extension and the server's hub token, who they are and how healthy the platform is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from himalia_testing import Platform, browser_log_in as log_in
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

TAB = '.jp-SideBar .lm-TabBar-tab[data-id="himalia-sidebar"]'
PANEL = "#himalia-sidebar"
# Spawning a local server and loading JupyterLab the first time takes a while.
SPAWN_TIMEOUT_MS = 120_000
TIMEOUT_MS = 30_000


def has_server(platform: Platform, name: str) -> bool:
    return bool(platform.api("GET", f"/users/{name}").json().get("servers"))


def test_scientist_spawns_from_the_form_and_sees_the_platform_in_the_sidebar(
    sqlite_platform: Platform, page: Page, unique_name, tmp_path: Path
) -> None:
    platform = sqlite_platform
    name = unique_name("sb")
    password = platform.create_user(name)
    try:
        log_in(page, platform, name, password)

        page.goto(f"{platform.url}/hub/spawn/{name}")
        cpu = page.locator('#spawn_form input[type="radio"][name="profile"][value="cpu"]')
        expect(cpu).to_be_visible(timeout=TIMEOUT_MS)
        cpu.check()
        page.locator('#spawn_form [type="submit"]').click()
        # spawn-pending, then the server's OAuth round trip, then JupyterLab.
        expect(page).to_have_url(re.compile(rf"/user/{name}/lab"), timeout=SPAWN_TIMEOUT_MS)
        assert platform.api("GET", f"/users/{name}").json()["servers"][""]["user_options"] == {
            "profile": "cpu"
        }

        tab = page.locator(TAB)
        expect(tab).to_be_visible(timeout=SPAWN_TIMEOUT_MS)
        tab.click()
        panel = page.locator(PANEL)
        expect(panel).to_be_visible(timeout=TIMEOUT_MS)

        expect(panel.locator(".jp-himalia-user")).to_have_text(name, timeout=TIMEOUT_MS)
        expect(panel.locator(".jp-himalia-role")).to_have_text(["scientist"], timeout=TIMEOUT_MS)
        for service in ("hub", "proxy", "database"):
            badge = panel.locator(f'tr[data-service="{service}"] .jp-himalia-badge')
            expect(badge).to_have_text("ok", timeout=TIMEOUT_MS)
            expect(badge).to_have_class(re.compile(r"\bjp-himalia-ok\b"), timeout=TIMEOUT_MS)
        expect(panel.locator(".jp-himalia-error")).to_have_count(0, timeout=TIMEOUT_MS)
        panel.screenshot(path=str(tmp_path / "hub-sidebar.png"))
        page.screenshot(path=str(tmp_path / "hub-lab.png"))

        # Help > himalia documentation opens the platform's guide in a new tab.
        page.locator('.lm-MenuBar-itemLabel:text-is("Help")').click()
        with page.context.expect_page() as opened:
            page.locator('.lm-Menu-itemLabel:text-is("himalia documentation")').click()
        guide = opened.value
        guide.wait_for_load_state()
        assert guide.url == f"{platform.url}/services/himalia/guide/", guide.url
        expect(guide.locator("h1")).to_have_text("himalia documentation", timeout=TIMEOUT_MS)
        expect(guide.locator('a[href="quickstart.md"]')).to_have_count(1)
        guide.close()
    finally:
        # Close the page first: JupyterLab would otherwise keep calling a server being stopped.
        page.close()
        if has_server(platform, name):
            platform.stop_server(name)


def test_viewer_logs_in_through_the_form_but_cannot_start_a_server(
    sqlite_platform: Platform, page: Page, unique_name
) -> None:
    platform = sqlite_platform
    name = unique_name("vw")
    password = platform.create_user(name, role="viewer")
    try:
        log_in(page, platform, name, password)

        response = page.goto(f"{platform.url}/hub/spawn/{name}")
        assert response is not None
        assert response.status == 403, (response.status, page.url)
        # Refused for want of the `servers` scope (not, say, a bad XSRF token).
        expect(page.locator("body")).to_contain_text("servers", timeout=TIMEOUT_MS)
        expect(page.locator("#spawn_form")).to_have_count(0, timeout=TIMEOUT_MS)

        # Posting the form anyway (as a crafted request with the page's cookies) is refused too.
        xsrf = next((c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"), "")
        posted = page.request.post(
            f"{platform.url}/hub/spawn/{name}",
            form={"profile": "cpu", "_xsrf": xsrf},
            max_redirects=0,
        )
        assert posted.status == 403, (posted.status, posted.text()[:500])
        assert "requires any of [servers]" in posted.text(), posted.text()[:500]
        assert not has_server(platform, name)
    finally:
        if has_server(platform, name):
            platform.stop_server(name)
