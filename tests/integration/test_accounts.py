"""Accounts on the real platform: invitations, sign-up, login throttling and approval.

Throttling counts failures per source address. The hub trusts ``X-Forwarded-For`` from the
public proxy, so tests that need distinct sources talk to the hub's own port (127.0.0.1)
with that header, exactly as the proxy would; tests through the public proxy all come from
127.0.0.1 and stay well below its ``source_failures``.
"""

from __future__ import annotations

import html
import os
import re
import signal
import sqlite3

import pytest
import requests

from himalia.hub.auth import state_changing_routes
from himalia_testing import STRONG, Platform, wait_for

INVALID_LINK = ("This invitation link is invalid, expired or already used; "
                "ask your administrator for a new one.")
WRONG = "Invalid username or password"


def text(r: requests.Response) -> str:
    return html.unescape(r.text)


def hub_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.runtime()['hub_port']}"


def attempt_login(platform: Platform, name: str, password: str, source: str | None = None,
                  headers: dict | None = None) -> requests.Response:
    """One login through the form; from ``source`` when given (via the hub's own port)."""
    s = requests.Session()
    s.headers.update(headers or {})
    base = platform.url
    if source:
        base = hub_url(platform)
        s.headers["X-Forwarded-For"] = source
    return platform.try_login(name, password, base=base, session=s)


def wait_for_response(request, condition, what: str, timeout: float = 30) -> requests.Response:
    """Repeat ``request()`` until its response meets ``condition``; return that response
    (a 4xx response is falsy, so ``wait_for`` cannot return it directly)."""
    last = []

    def check() -> bool:
        last[:] = [request()]
        return condition(last[0])

    wait_for(check, timeout, what=what)
    return last[0]


def new_member(platform: Platform, name: str, password: str = STRONG,
               role: str = "scientist") -> str:
    """Invite ``name`` and accept the invitation with ``password``."""
    r = platform.accept_invitation(platform.invite(name, role), password)
    assert r.status_code == 200, text(r)
    return password


def hub_db(platform: Platform) -> sqlite3.Connection:
    return sqlite3.connect(platform.state_dir / "jupyterhub.sqlite")


def admin_session(platform: Platform) -> requests.Session:
    if not platform.admin_password:
        pytest.fail("the first start must print the one-time admin password")
    return platform.login("admin", platform.admin_password)


def form_xsrf(page: str) -> str:
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


# -- invitations -------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [{}, {"admin": True}], ids=["user", "admin-user"])
def test_an_admin_created_account_cannot_be_claimed_by_signing_up(sqlite_platform, unique_name,
                                                                  body):
    platform = sqlite_platform
    name = unique_name("pc")
    assert platform.api("POST", f"/users/{name}", json=body).status_code == 201

    r = platform.signup(name, "strangers-Password-1")
    assert "is reserved" in text(r) and "invitation link" in text(r)
    assert not attempt_login(platform, name, "strangers-Password-1").logged_in

    # The real person gets in through the invitation the admin sends them.
    new_member(platform, name, role="admin" if body else "scientist")
    assert platform.login(name, STRONG).himalia_user == name
    assert platform.role_of(name) == ("admin" if body else "scientist")


def test_an_invitation_works_once(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("so")
    url = platform.invite(name)
    page = requests.get(f"{platform.url}{url}", timeout=30)
    assert page.status_code == 200 and name in text(page)

    assert platform.accept_invitation(url, STRONG).status_code == 200
    again = platform.accept_invitation(url, "another-Password-2")
    assert again.status_code == 404 and INVALID_LINK in text(again)
    assert platform.login(name, STRONG).himalia_user == name
    assert not attempt_login(platform, name, "another-Password-2").logged_in
    # The token is a secret: the hub's log shows neither the link nor the token.
    token = url.rsplit("/", 1)[1]
    assert token not in (platform.state_dir / "logs" / "hub.log").read_text()


def test_an_invitation_expires(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("ex")
    url = platform.invite(name, expires_in=1)
    expired = wait_for_response(lambda: requests.get(f"{platform.url}{url}", timeout=30),
                                lambda r: r.status_code == 404, "the invitation to expire")
    assert INVALID_LINK in text(expired) and name not in text(expired)
    r = platform.accept_invitation(url, STRONG)
    assert r.status_code == 404 and INVALID_LINK in text(r)
    unknown = requests.get(f"{platform.url}/hub/invite/no-such-token", timeout=30)
    assert unknown.status_code == 404 and INVALID_LINK in text(unknown)


def test_a_new_invitation_revokes_the_old_one_and_admins_can_revoke(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("rv")
    first, second = platform.invite(name), platform.invite(name, "viewer")
    assert requests.get(f"{platform.url}{first}", timeout=30).status_code == 404
    assert requests.get(f"{platform.url}{second}", timeout=30).status_code == 200

    listing = platform.api("GET", "/invitations")
    assert listing.status_code == 200
    mine = [i for i in listing.json() if i["username"] == name]
    assert [i["role"] for i in mine] == ["viewer"]
    token = second.rsplit("/", 1)[1]
    assert token not in listing.text and "url" not in mine[0]
    with hub_db(platform) as db:
        assert token not in repr(db.execute("SELECT * FROM himalia_invitations").fetchall())

    assert platform.api("DELETE", f"/invitations/{name}").status_code == 204
    assert requests.get(f"{platform.url}{second}", timeout=30).status_code == 404
    r = platform.api("DELETE", f"/invitations/{name}")
    assert r.status_code == 404 and "no unused invitation" in r.json()["message"]


def test_an_invitation_sets_exactly_one_role_and_resets_the_password(sqlite_platform,
                                                                    unique_name):
    platform = sqlite_platform
    name = unique_name("rg")
    new_member(platform, name, role="viewer")
    model = platform.api("GET", f"/users/{name}").json()
    assert platform.role_of(name) == "viewer"
    assert "viewer" in model["roles"] and "scientist" not in model["roles"]
    assert model["groups"] == []

    # Re-inviting someone who has a password is how an admin recovers their account.
    new_member(platform, name, "new-Password-for-3", role="scientist")
    model = platform.api("GET", f"/users/{name}").json()
    assert platform.role_of(name) == "scientist" and "viewer" not in model["roles"]
    assert not attempt_login(platform, name, STRONG).logged_in
    assert platform.login(name, "new-Password-for-3").himalia_user == name


def test_invitation_requests_are_checked_and_admin_only(sqlite_platform, unique_name):
    platform = sqlite_platform
    cases = [
        # Names that would not map onto exactly one Unix account, told what is allowed.
        ({"username": "Has Space"}, "of a-z, 0-9, '_' and '-'"),
        ({"username": "x/y"}, "of a-z, 0-9, '_' and '-'"),
        ({"username": "ann.lee"}, "of a-z, 0-9, '_' and '-'"),
        ({"username": "a" * 26}, f"at most {32 - len(platform.user_prefix)} characters"),
        ({"username": unique_name("bad"), "role": "boss"}, "admin, scientist, viewer"),
        ({"username": unique_name("bad"), "expires_in": 0}, "expires_in"),
        ({"username": unique_name("bad"), "expires_in": 31 * 86400}, "30 days"),
        ({"username": unique_name("bad"), "colour": "red"}, "colour"),
        ({}, "username is required"),
    ]
    for body, says in cases:
        r = platform.api("POST", "/invitations", json=body)
        assert r.status_code == 400, (body, r.text)
        assert says in r.json()["message"], (body, r.json())
    name = unique_name("na")
    session = platform.login(name, new_member(platform, name))
    token = platform.user_token(session)["token"]
    r = platform.api("POST", "/invitations", token=token, json={"username": "mallory"})
    assert r.status_code == 403
    assert platform.api("GET", "/invitations", token=token).status_code == 403


# -- login throttling --------------------------------------------------------------------------
def test_failures_lock_the_source_and_name_pair_even_for_the_right_password(sqlite_platform,
                                                                            unique_name):
    platform = sqlite_platform
    name, other = unique_name("lk"), unique_name("lo")
    new_member(platform, name)
    source = "10.1.0.1"
    for i in range(5):
        r = attempt_login(platform, name, f"wrong-guess-{i}", source)
        assert r.status_code == 403 and WRONG in text(r)
    locked = attempt_login(platform, name, STRONG, source)
    assert locked.status_code == 429 and not locked.logged_in
    assert "Too many failed logins" in text(locked) and "try again in 5 minutes" in text(locked)
    with hub_db(platform) as db:
        locks = db.execute("SELECT kind, subject FROM himalia_login_locks").fetchall()
    assert ("pair", f"{source} {name}") in locks

    # Other sources are not affected, nor other names from the same source.
    assert attempt_login(platform, name, STRONG, "10.1.0.2").logged_in
    r = attempt_login(platform, other, "wrong-guess-x", source)
    assert r.status_code == 403 and WRONG in text(r)
    # ... until the source reaches source_failures (30 failures: 6 so far) across names.
    for i in range(24):
        assert attempt_login(platform, f"{other}{i}", f"guess-{i}", source).status_code == 403
    r = attempt_login(platform, f"{other}x", "guess-last", source)
    assert r.status_code == 429 and "from your address" in text(r)


def test_a_sprayed_password_is_refused_for_every_name(sqlite_platform, unique_name):
    platform = sqlite_platform
    sprayed = "Spray-this-2030!"
    owner = unique_name("sp")
    new_member(platform, owner, sprayed)
    for i in range(5):
        r = attempt_login(platform, unique_name("sv"), sprayed, f"10.2.0.{i + 1}")
        assert r.status_code == 403
    refused = attempt_login(platform, owner, sprayed, "10.2.0.99")
    assert refused.status_code == 429 and "with this password" in text(refused)
    other = attempt_login(platform, unique_name("sv"), "another-guess", "10.2.0.99")
    assert other.status_code == 403 and WRONG in text(other)


def test_x_real_ip_does_not_move_a_client_to_another_source(sqlite_platform, unique_name):
    platform = sqlite_platform
    name = unique_name("xr")
    new_member(platform, name)
    for i in range(5):
        attempt_login(platform, name, f"wrong-{i}", headers={"X-Real-Ip": f"192.0.2.{i + 1}"})
    r = attempt_login(platform, name, STRONG, headers={"X-Real-Ip": "192.0.2.200"})
    assert r.status_code == 429 and not r.logged_in


def test_the_login_page_reveals_pending_approval_only_to_the_right_password(sqlite_platform,
                                                                            unique_name):
    platform = sqlite_platform
    name = unique_name("pa")
    platform.signup(name, STRONG)
    wrong = attempt_login(platform, name, "not-the-password")
    assert WRONG in text(wrong) and "approved" not in text(wrong)
    right = attempt_login(platform, name, STRONG)
    assert not right.logged_in and "not been approved by an administrator yet" in text(right)


# -- approval pages ----------------------------------------------------------------------------
def pending(platform: Platform, name: str, password: str = STRONG) -> bool:
    return "not been approved" in text(attempt_login(platform, name, password))


def test_approval_and_discard_change_state_only_on_post_with_xsrf(sqlite_platform, unique_name):
    platform = sqlite_platform
    admin = admin_session(platform)
    del admin.headers["X-XSRFToken"]
    approved, discarded = unique_name("ap"), unique_name("dc")
    platform.signup(approved, STRONG)
    platform.signup(discarded, STRONG)

    for verb in ("authorize", "discard"):
        for name in (approved, discarded):
            r = admin.get(f"{platform.url}/hub/{verb}/{name}", timeout=30, allow_redirects=False)
            assert r.status_code == 405
            r = admin.post(f"{platform.url}/hub/{verb}/{name}", timeout=30, allow_redirects=False)
            assert r.status_code == 403
    assert pending(platform, approved) and pending(platform, discarded)

    page = admin.get(f"{platform.url}/hub/authorize", timeout=30)
    assert page.status_code == 200 and approved in page.text
    xsrf = form_xsrf(page.text)
    r = admin.post(f"{platform.url}/hub/authorize/{approved}", data={"_xsrf": xsrf}, timeout=30,
                   allow_redirects=False)
    assert r.status_code == 302
    assert platform.login(approved, STRONG).himalia_user == approved
    r = admin.post(f"{platform.url}/hub/discard/{discarded}", data={"_xsrf": xsrf}, timeout=30,
                   allow_redirects=False)
    assert r.status_code == 302
    assert discarded not in admin.get(f"{platform.url}/hub/authorize", timeout=30).text
    assert WRONG in text(attempt_login(platform, discarded, STRONG))


def test_every_state_changing_account_route_refuses_requests_without_xsrf(sqlite_platform):
    platform = sqlite_platform
    admin = admin_session(platform)
    del admin.headers["X-XSRFToken"]
    routes = state_changing_routes()
    assert {path for path, _, _ in routes} >= {"/signup", "/invite/([^/]+)", "/authorize/([^/]+)",
                                                "/discard/([^/]+)", "/api/invitations"}
    for path, _, methods in routes:
        url = f"{platform.url}/hub{path.replace('([^/]+)', 'nobody')}"
        for method in methods:
            kwargs = {"json": {"username": "nobody"}} if "/api/" in path else {"data": {"x": "1"}}
            r = admin.request(method, url, timeout=30, allow_redirects=False, **kwargs)
            assert r.status_code == 403, (method, path, r.status_code)


# -- a platform of its own: a short-lived one-time password and a hub restart -----------------
def test_the_one_time_password_expires_and_locks_survive_a_hub_restart(proxy_bin):
    platform = Platform(None, proxy_bin)
    platform.write_config()
    with open(platform.state_dir / "himalia_config.py", "a") as config:
        config.write("c.HimaliaAuthenticator.bootstrap_password_lifetime = 2\n")
    try:
        platform.start()
        password = platform.admin_password
        assert password
        expired = wait_for_response(lambda: attempt_login(platform, "admin", password),
                                    lambda r: r.status_code == 403,
                                    "the one-time password to expire")
        assert not expired.logged_in
        assert "one-time password of admin has expired" in text(expired)
        assert "himalia users invite admin" in text(expired)
        wrong = attempt_login(platform, "admin", "not-the-password")
        assert WRONG in text(wrong) and "expired" not in text(wrong)

        for i in range(5):
            attempt_login(platform, "admin", f"wrong-{i}", "10.3.0.1")
        assert attempt_login(platform, "admin", password, "10.3.0.1").status_code == 429
        old_hub = platform.runtime()["pids"]["hub"]
        os.kill(old_hub, signal.SIGTERM)
        wait_for(lambda: (pid := platform.runtime()["pids"]["hub"]) != old_hub and pid, 60,
                 what="the supervisor to restart the hub")
        wait_for(lambda: requests.get(f"{platform.url}/hub/health", timeout=5).ok, 60,
                 what="hub health")
        assert attempt_login(platform, "admin", password, "10.3.0.1").status_code == 429

        # An invitation gives the admin a lasting password.
        r = platform.accept_invitation(platform.invite("admin"), "lasting-Admin-Password-7")
        assert r.status_code == 200, text(r)
        assert platform.login("admin", "lasting-Admin-Password-7").himalia_user == "admin"
        assert platform.role_of("admin") == "admin"
    finally:
        platform.close()
