"""The People page in headless Chromium: an admin invites someone and copies the link, shown
once; the invitee opens it, chooses a password, and the link does not work a second time."""

from __future__ import annotations

import re

import pytest
from himalia_testing import STRONG, Platform, browser_log_in
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

INVALID_LINK = "This invitation link is invalid, expired or already used"


def test_an_admin_invites_from_the_people_page_and_the_link_works_once(
    sqlite_platform: Platform, browser: Browser, page: Page, unique_name
) -> None:
    platform = sqlite_platform
    name = unique_name("pp")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=platform.url)
    browser_log_in(page, platform, "admin", platform.admin_password)

    page.goto(f"{platform.url}/hub/home")
    page.locator("#himalia-people-link").click()
    expect(page).to_have_url(re.compile(r"/hub/people$"))
    expect(page.locator("#himalia-invite-rule")).to_contain_text(
        f"at most {32 - len(platform.user_prefix)} characters")

    page.locator("#himalia-invite-name").fill(name.upper())
    page.locator("#himalia-invite-role").select_option("viewer")
    page.locator("#himalia-invite-submit").click()

    issued = page.locator("#himalia-invitation-issued")
    expect(issued).to_contain_text(f"{name} is invited as viewer")
    link = page.locator("#himalia-invitation-link").input_value()
    assert re.fullmatch(rf"{re.escape(platform.url)}/hub/invite/[A-Za-z0-9_-]{{40,}}", link), link
    page.locator("#himalia-copy-link").click()
    expect(page.locator("#himalia-copy-link")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link

    row = page.locator(f'#himalia-people-table tr[data-name="{name}"]')
    expect(row.locator(".himalia-person-role")).to_have_text("viewer")
    expect(row.locator(".himalia-person-password")).to_have_text("not set")
    expect(row.locator(".himalia-person-invitation")).to_contain_text("pending until")

    # Shown once: the People page never shows it again.
    page.goto(f"{platform.url}/hub/people")
    expect(page.locator("#himalia-people-table")).to_contain_text(name)
    assert link not in page.content()
    assert link.rsplit("/", 1)[1] not in page.content()

    # The invitee, in a browser of their own.
    invitee = browser.new_context()
    try:
        their_page = invitee.new_page()
        their_page.goto(link)
        expect(their_page.locator("#himalia-invited-name")).to_have_text(name)
        their_page.locator("#password_input").fill(STRONG)
        their_page.locator("#password_confirmation_input").fill(STRONG)
        their_page.locator("#invitation_submit").click()
        expect(their_page.locator("#himalia-invitation-done")).to_be_visible()

        again = their_page.goto(link)
        assert again is not None and again.status == 404
        expect(their_page.locator("body")).to_contain_text(INVALID_LINK)

        browser_log_in(their_page, platform, name.capitalize(), STRONG)
        expect(their_page.locator("#himalia-viewer-home")).to_be_visible()
    finally:
        invitee.close()

    page.goto(f"{platform.url}/hub/people")
    row = page.locator(f'#himalia-people-table tr[data-name="{name}"]')
    expect(row.locator(".himalia-person-password")).to_have_text("set")
    expect(row.locator(".himalia-person-invitation")).to_have_text("")

    # The role menu of the row makes the viewer a scientist: the hub's role, at once.
    row.locator(".himalia-role-form select").select_option("scientist")
    row.locator(".himalia-role-form button").click()
    row = page.locator(f'#himalia-people-table tr[data-name="{name}"]')
    expect(row.locator(".himalia-person-role")).to_have_text("scientist")
    assert platform.role_of(name) == "scientist"
