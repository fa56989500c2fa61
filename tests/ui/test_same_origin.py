"""In a real browser, a page of the hub's origin cannot read the platform API with the cookie.

Every user's JupyterLab is served from the hub's origin, so any script there (another user's
page included) runs with the origin of the API. Headless Chromium, logged in as alice and
holding the API's cookie, runs such a script from a hub page: its fetch() is refused, and a
window it opens onto the API is sandboxed, so it cannot read what alice sees there.
"""

from __future__ import annotations

import pytest
from himalia_testing import Platform, browser_log_in
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

WHOAMI = "/services/himalia/api/v1/whoami"


def test_a_same_origin_script_cannot_read_another_users_api_replies(
    sqlite_platform: Platform, page: Page, unique_name
) -> None:
    platform = sqlite_platform
    name = unique_name("so")
    browser_log_in(page, platform, name, platform.create_user(name))
    # alice opens the API herself: the hub's OAuth login leaves the API's cookie in the browser.
    page.goto(platform.url + WHOAMI)
    assert f'"name":"{name}"' in page.content()

    page.goto(f"{platform.url}/hub/home")
    status, body = page.evaluate(
        "async (url) => { const r = await fetch(url, {credentials: 'include'});"
        " return [r.status, await r.text()]; }",
        WHOAMI,
    )
    assert status == 403, body
    assert name not in body and "X-XSRFToken" in body

    with page.context.expect_page() as opened:
        page.evaluate("(url) => { window.apiWindow = window.open(url); }", WHOAMI)
    popup = opened.value
    popup.wait_for_load_state()
    # The browser shows alice her answer (the test reads it through the debugger) ...
    assert name in popup.content()
    # ... but the script that opened the window cannot: the answer lives in an opaque origin.
    seen = page.evaluate(
        "() => { try { return window.apiWindow.document.body.innerText; }"
        " catch (e) { return 'refused: ' + e.name; } }"
    )
    assert seen == "refused: SecurityError", seen
