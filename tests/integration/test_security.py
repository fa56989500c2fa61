"""The platform's security rules, checked on a running platform (as an attacker would try them).

Every route of the platform API refuses anonymous callers and users without a role, a page
of the same origin cannot read another user's API replies, every state-changing hub handler
himalia adds needs the hub's XSRF token, revoked tokens stop opening servers within seconds,
and no user code or platform service runs as root.
"""

from __future__ import annotations

import os
import pwd
import re
import stat

import pytest
import requests

from himalia_testing import Kernel, wait_for

API = "/services/himalia"
SAME_ORIGIN_FETCH = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "empty"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Accept": "text/html"}


@pytest.fixture(scope="module")
def platform(sqlite_platform):
    return sqlite_platform


#: Values that name an existing object, for routes with path parameters; others get "x".
EXAMPLES = {"name": "index.md"}


def fill(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: EXAMPLES.get(m.group(1), "x"), path)


def api_routes(platform) -> list[tuple[str, str]]:
    """(method, path) of every route the API documents, plus its documentation routes."""
    spec = requests.get(f"{platform.url}{API}/openapi.json", timeout=30,
                        headers={"Authorization": f"token {platform.admin_token}"}).json()
    routes = [(method.upper(), fill(path)) for path, item in spec["paths"].items() for method in item]
    routes += [("GET", f"{API}/openapi.json"), ("GET", f"{API}/docs"), ("GET", f"{API}/")]
    assert ("GET", f"{API}/api/v1/health") in routes
    return routes


def roleless_token(platform, name: str) -> str:
    assert platform.api("POST", f"/users/{name}").status_code == 201
    platform.set_role(name, None)
    assert platform.role_of(name) is None
    r = platform.api("POST", f"/users/{name}/tokens", json={"note": "no role"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def browser_session(platform, name: str):
    """A logged-in browser that has been through the API's OAuth login (holds its cookie)."""
    session = platform.login(name, platform.create_user(name))
    r = session.get(f"{platform.url}{API}/api/v1/whoami", headers=NAVIGATE, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == name, (r.status_code, r.url)
    return session


def test_every_api_route_refuses_anonymous_and_roleless_callers(platform, unique_name):
    token = roleless_token(platform, unique_name("nr"))
    scientist = platform.user_token(platform.login(n := unique_name("sc"), platform.create_user(n)))["token"]
    for method, path in api_routes(platform):
        url = platform.url + path
        anonymous = requests.request(method, url, timeout=30)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        assert anonymous.json()["message"]
        r = requests.request(method, url, headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "no platform role" in r.json()["message"], r.text
        # A scientist gets past authorization (a placeholder id may then be 404, an empty
        # body 422: what is checked here is that the role is enough).
        allowed = requests.request(method, url, headers={"Authorization": f"token {scientist}"}, timeout=30)
        assert allowed.status_code not in (401, 403), (method, path, allowed.status_code, allowed.text)
        assert allowed.status_code < 500, (method, path, allowed.status_code, allowed.text)


def test_a_same_origin_page_cannot_read_another_users_api_replies(platform, unique_name):
    alice = browser_session(platform, unique_name("al"))
    for method, path in api_routes(platform):
        # What a script on /user/mallory/... can send with alice's cookie: fetch() ...
        r = alice.request(method, platform.url + path, headers=SAME_ORIGIN_FETCH, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "XSRF" in r.json()["message"] or "xsrf" in r.json()["message"].lower()
    # ... or window.open(): a navigation, answered in a sandbox (an opaque origin it cannot read).
    r = alice.get(f"{platform.url}{API}/api/v1/whoami", headers=NAVIGATE, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Security-Policy"].startswith("sandbox")
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    # The cookie itself is signed, HttpOnly and scoped to the API.
    cookie = next(c for c in alice.cookies if c.path == f"{API}/" and "himalia" in c.name)
    assert cookie.has_nonstandard_attr("HttpOnly")
    tampered = requests.Session()
    tampered.cookies.set(cookie.name, cookie.value[:-4] + "AAAA", path=f"{API}/")
    r = tampered.get(f"{platform.url}{API}/api/v1/whoami", timeout=30)
    assert r.status_code == 401


def test_names_that_would_share_a_unix_account_cannot_be_created(platform):
    for name in ("ann.lee", "ann+lee", "x" * 40):
        r = platform.api("POST", f"/users/{name}")
        assert r.status_code == 400, (name, r.status_code)
        assert platform.api("GET", f"/users/{name}").status_code == 404
    assert platform.api("POST", "/users", json={"usernames": ["ann.lee"]}).status_code == 400


def test_an_oauth_callback_with_a_foreign_state_is_refused(platform, unique_name):
    alice = platform.login(n := unique_name("os"), platform.create_user(n))
    # Start a login so the browser holds a state cookie, then come back with another state.
    first = alice.get(f"{platform.url}{API}/api/v1/whoami", headers={"Accept": "text/html"},
                      allow_redirects=False, timeout=30)
    assert first.status_code == 302
    r = alice.get(f"{platform.url}{API}/oauth_callback", params={"code": "x", "state": "forged"},
                  timeout=30)
    assert r.status_code == 403
    assert "OAuth state mismatch" in r.json()["message"]


def test_health_details_are_for_admins_only(platform, unique_name):
    session = platform.login(n := unique_name("hd"), platform.create_user(n))
    token = platform.user_token(session)["token"]
    mine = requests.get(f"{platform.url}{API}/api/v1/health", timeout=30,
                        headers={"Authorization": f"token {token}"}).json()
    assert mine["services"] and all(set(part) == {"ok"} for part in mine["services"].values()), mine
    admin = requests.get(f"{platform.url}{API}/api/v1/health", timeout=30,
                         headers={"Authorization": f"token {platform.admin_token}"}).json()
    assert all("detail" in part for part in admin["services"].values())


def test_a_revoked_token_stops_opening_a_server_within_seconds(platform, unique_name):
    name = unique_name("rv")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    token = platform.user_token(session)
    headers = {"Authorization": f"token {token['token']}"}
    assert requests.get(f"{server}api/status", headers=headers, timeout=30).status_code == 200
    r = session.delete(f"{platform.url}/hub/api/users/{name}/tokens/{token['id']}", timeout=30)
    assert r.status_code == 204
    # The server caches the hub's answer for 10 s, not JupyterHub's default 300 s.
    wait_for(lambda: requests.get(f"{server}api/status", headers=headers, timeout=30).status_code == 403,
             30, interval=1, what="the user's server to refuse the revoked token")
    platform.stop_server(name)


def test_no_user_code_and_no_platform_service_runs_as_root(platform, unique_name):
    if os.geteuid() != 0:
        pytest.skip("started without root, nothing runs as root anyway")
    name = unique_name("nr")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    kernel = Kernel(server, platform.user_token(session)["token"])
    try:
        assert kernel.execute("import os; print(os.getuid())")["stdout"].strip() != "0"
        by_part = {}
        for proc in platform.processes():
            cmd = " ".join(proc.cmdline())
            for part in ("himalia.hub.services.api", "jupyterhub_idle_culler",
                         "himalia.kernels.singleuser", "himalia.kernels -f"):
                if part in cmd:
                    by_part.setdefault(part, set()).add(pwd.getpwuid(proc.uids().real).pw_name)
        service = platform.user_prefix + "svc"
        assert by_part["himalia.hub.services.api"] == {service}
        assert by_part["jupyterhub_idle_culler"] == {service}
        assert by_part["himalia.kernels.singleuser"] >= {platform.user_prefix + name}
        assert "root" not in by_part["himalia.kernels.singleuser"] | by_part["himalia.kernels -f"]
    finally:
        kernel.close()
    platform.stop_server(name)


def test_state_files_are_private(platform):
    state = platform.state_dir
    root = state.stat()
    assert stat.S_IMODE(root.st_mode) & 0o007 == 0
    for entry in state.iterdir():
        mode = stat.S_IMODE(entry.lstat().st_mode)
        assert mode & 0o077 == 0, (entry, oct(mode))
    if os.geteuid() == 0:
        assert pwd.getpwuid((state / "api").stat().st_uid).pw_name == platform.user_prefix + "svc"
        assert (state / "jupyterhub.sqlite").stat().st_uid == 0
