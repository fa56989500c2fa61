"""Nothing a person opens asks the internet for anything.

Headless Chromium records every request its pages make (documents, scripts, styles, fonts,
images, fetches, websockets) while an admin logs in, starts a ``cpu`` server from the spawn
form, waits for JupyterLab to load completely, and opens the platform API's docs, the hub's
admin page and the People page. Any request to a host other than this machine fails the
test (and is refused, so nothing waits on a network that is not there). On the way,
JupyterLab must not offer Jupyter's news feed and its File menu must have one "Log Out".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from himalia_testing import Platform, browser_log_in
from playwright.sync_api import Browser, Page, Route, expect

pytestmark = pytest.mark.browser

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
NEWS_PROMPT = "Would you like to get notified about official Jupyter news?"
SPAWN_TIMEOUT_MS = 120_000
TIMEOUT_MS = 30_000
#: Lab's plugins (news among them) act once the application is restored; give them time.
SETTLE_MS = 4_000


@dataclass
class Walk:
    """What the browser did and saw on the way."""

    requests: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    news_prompts: int = -1
    log_out_items: list[str] = field(default_factory=list)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https", "ws", "wss"}:
        return True  # data:, blob:, about: never leave the browser
    return parts.hostname in LOCAL_HOSTS


def record(walk: Walk):
    def on_route(route: Route) -> None:
        url = route.request.url
        walk.requests.append(url)
        if is_local(url):
            route.continue_()
        else:
            request = route.request
            walk.external.append(f"{request.resource_type} {url} (from {request.frame.url})")
            route.abort("blockedbyclient")

    return on_route


def record_websockets(walk: Walk):
    # Websockets do not go through routes.
    def on_websocket(websocket) -> None:
        walk.requests.append(websocket.url)
        if not is_local(websocket.url):
            walk.external.append(f"websocket {websocket.url}")

    return lambda page: page.on("websocket", on_websocket)


#: Pages opened after JupyterLab, and what shows each one rendered (not blank).
PAGES = [
    ("/services/himalia/docs", ".swagger-ui .info .title", "himalia platform API"),
    ("/hub/admin", "#react-admin-hook", "admin"),
    ("/hub/people", "#himalia-people-table", "admin"),
    ("/hub/home", "#himalia-brand", "himalia"),
]


def open_page(page: Page, walk: Walk, url: str, rendered: str, says: str) -> None:
    walk.pages.append(url)
    response = page.goto(url)
    assert response is not None and response.ok, (url, response and response.status)
    try:
        expect(page.locator(rendered).first).to_contain_text(says, timeout=TIMEOUT_MS)
    except AssertionError:
        walk.blank.append(f"{url}: no {rendered} saying {says!r}")
    page.wait_for_load_state("networkidle")


@pytest.fixture(scope="module")
def walk(sqlite_platform: Platform, browser: Browser) -> Iterator[Walk]:
    platform = sqlite_platform
    seen = Walk()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.route("**/*", record(seen))
    page = context.new_page()
    record_websockets(seen)(page)
    page.set_default_timeout(TIMEOUT_MS)
    try:
        browser_log_in(page, platform, "admin", platform.admin_password)
        page.wait_for_load_state("networkidle")
        walk_lab(page, platform, seen)
        for path, rendered, says in PAGES:
            open_page(page, seen, platform.url + path, rendered, says)
        yield seen
    finally:
        context.close()
        if (platform.api("GET", "/users/admin").json().get("servers") or {}):
            platform.stop_server("admin")


def walk_lab(page: Page, platform: Platform, seen: Walk) -> None:
    page.goto(f"{platform.url}/hub/spawn/admin")
    cpu = page.locator('#spawn_form input[type="radio"][name="profile"][value="cpu"]')
    expect(cpu).to_be_visible()
    cpu.check()
    page.locator('#spawn_form [type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/user/admin/lab"), timeout=SPAWN_TIMEOUT_MS)
    seen.pages.append(page.url)
    # Fully loaded: the launcher is up, the himalia sidebar has asked the platform, and the
    # network is quiet.
    expect(page.locator(".jp-Launcher")).to_be_visible(timeout=SPAWN_TIMEOUT_MS)
    expect(page.locator('.jp-SideBar .lm-TabBar-tab[data-id="himalia-sidebar"]')).to_be_visible(
        timeout=SPAWN_TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(SETTLE_MS)
    seen.news_prompts = page.get_by_text(NEWS_PROMPT).count()

    page.locator("#jp-MainMenu").get_by_text("File", exact=True).click()
    file_menu = page.locator(".lm-Menu").last
    expect(file_menu).to_be_visible()
    seen.log_out_items = [
        item.inner_text().strip()
        for item in file_menu.get_by_role("menuitem").all()
        if item.is_visible() and "Log Out" in item.inner_text()
    ]
    page.keyboard.press("Escape")


def test_no_page_requests_anything_from_another_host(walk: Walk) -> None:
    assert walk.external == [], "\n".join(walk.external)
    assert any("/user/admin/lab" in url for url in walk.requests)
    assert any("/services/himalia/static/docs/swagger-ui-bundle.js" in url for url in walk.requests)


def test_every_page_shows_its_content_without_the_internet(walk: Walk) -> None:
    assert walk.blank == [], "\n".join(walk.blank)


def test_jupyterlab_does_not_offer_jupyter_news(walk: Walk) -> None:
    assert walk.news_prompts == 0


def test_jupyterlab_file_menu_has_one_log_out(walk: Walk) -> None:
    assert len(walk.log_out_items) == 1, walk.log_out_items
