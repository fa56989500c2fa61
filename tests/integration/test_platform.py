"""The platform as people use it: `himalia up`, log in, spawn, run `%himalia`, stay isolated.

Runs against real processes on 127.0.0.1 (configurable-http-proxy, JupyterHub, the platform
API, single-user servers and kernels), once on SQLite and once on the local PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import stat

import pytest
import requests

from himalia_testing import STRONG, Kernel, himalia_cli, require_service, wait_for


def api_get(platform, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(f"{platform.url}/services/himalia{path}", headers=headers, timeout=30)


def test_scientist_logs_in_spawns_and_sees_themselves_in_himalia_magic(platform, unique_name):
    name = unique_name("sci")
    password = platform.create_user(name)
    session = platform.login(name, password)
    server = platform.spawn(session)
    token = platform.user_token(session)["token"]
    kernel = Kernel(server, token)
    try:
        out = kernel.execute("%himalia")
        assert out["error"] is None and out["data"], out
        text = out["data"][0]["text/plain"]
        assert f"user: {name}" in text
        assert "role: scientist" in text
        assert "database" in text and "proxy" in text
        who = kernel.execute("import os, getpass; print(getpass.getuser(), os.getuid(), oct(os.stat(os.path.expanduser('~')).st_mode & 0o777))")
        account, uid, mode = who["stdout"].split()
        assert mode == "0o700"
        assert int(uid) != 0, "no user code runs as root"
        if os.geteuid() == 0:
            assert account == platform.user_prefix + name
        else:
            assert account == pwd.getpwuid(os.geteuid()).pw_name
    finally:
        kernel.close()
    platform.stop_server(name)


def test_whoami_reports_the_platform_role(platform, unique_name):
    name = unique_name("vw")
    password = platform.create_user(name, role="viewer")
    session = platform.login(name, password)
    # Viewers hold no token scope; they reach the API with their browser session (hub OAuth).
    assert session.post(f"{platform.url}/hub/api/users/{name}/tokens", json={}, timeout=30).status_code == 403
    r = session.get(f"{platform.url}/services/himalia/api/v1/whoami",
                    headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == name
    assert body["roles"] == ["viewer"]
    assert "access:services!service=himalia" in body["scopes"]


def test_viewer_can_log_in_but_cannot_spawn(platform, unique_name):
    name = unique_name("vw")
    password = platform.create_user(name, role="viewer")
    session = platform.login(name, password)
    r = session.post(f"{platform.url}/hub/api/users/{name}/server", json={}, timeout=30)
    assert r.status_code == 403, r.text
    assert not platform.api("GET", f"/users/{name}").json()["servers"]


def test_scientists_cannot_reach_each_others_servers_or_files(platform, unique_name):
    if os.geteuid() != 0:
        require_service("isolation between users needs root (a Unix account per user)")
    a, b = unique_name("a"), unique_name("b")
    sa = platform.login(a, platform.create_user(a))
    sb = platform.login(b, platform.create_user(b))
    server_b = platform.spawn(sb)
    server_a = platform.spawn(sa)
    token_a = platform.user_token(sa)["token"]
    token_b = platform.user_token(sb)["token"]

    # A's token and A's browser session are refused by B's server.
    r = requests.get(f"{server_b}api/contents", headers={"Authorization": f"token {token_a}"}, timeout=30)
    assert r.status_code in (403, 404), r.status_code
    r = sa.get(f"{server_b}api/contents", timeout=30, allow_redirects=True)
    assert r.status_code in (403, 404) or "/hub/" in r.url, (r.status_code, r.url)
    # B's own token works.
    r = requests.get(f"{server_b}api/contents", headers={"Authorization": f"token {token_b}"}, timeout=30)
    assert r.status_code == 200

    kb = Kernel(server_b, token_b)
    ka = Kernel(server_a, token_a)
    try:
        out = kb.execute("import os; p = os.path.expanduser('~/secret.txt'); open(p, 'w').write('b only'); print(p)")
        secret = out["stdout"].strip()
        out = ka.execute(f"open({secret!r}).read()")
        assert out["error"] and out["error"].startswith("PermissionError"), out
        owner = pwd.getpwuid(os.stat(secret).st_uid).pw_name
        assert owner == platform.user_prefix + b
        assert stat.S_IMODE(os.stat(os.path.dirname(secret)).st_mode) == 0o700
        # The same file read as B works: the refusal above is the isolation, not a broken path.
        assert kb.execute(f"print(open({secret!r}).read())")["stdout"].strip() == "b only"
    finally:
        ka.close()
        kb.close()
    platform.stop_server(a)
    platform.stop_server(b)


def test_anonymous_revoked_and_expired_tokens_are_refused(platform, unique_name):
    r = api_get(platform, "/api/v1/whoami")
    assert r.status_code == 401
    assert "token" in r.json()["message"]
    r = api_get(platform, "/api/v1/health")
    assert r.status_code == 401
    assert api_get(platform, "/api/v1/whoami", "not-a-real-token").status_code == 401

    name = unique_name("tk")
    session = platform.login(name, platform.create_user(name))
    token = platform.user_token(session)
    assert api_get(platform, "/api/v1/whoami", token["token"]).status_code == 200
    r = session.delete(f"{platform.url}/hub/api/users/{name}/tokens/{token['id']}", timeout=30)
    assert r.status_code == 204
    # The API caches hub answers briefly; the revoked token must stop working within that window.
    wait_for(lambda: api_get(platform, "/api/v1/whoami", token["token"]).status_code == 401, 90,
             interval=1, what="revoked token to be refused")

    short = platform.user_token(session, expires_in=1, note="short")
    wait_for(lambda: api_get(platform, "/api/v1/whoami", short["token"]).status_code == 401, 90,
             interval=1, what="expired token to be refused")


def test_health_lists_hub_proxy_database_and_services(platform):
    r = api_get(platform, "/api/v1/health", platform.admin_token)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True, body
    parts = body["services"]
    for part in ("hub", "proxy", "database", "service:himalia", "service:idle-culler"):
        assert parts[part]["ok"], (part, parts[part])
    expected = "postgresql" if platform.db_url else "sqlite"
    assert parts["database"]["detail"] == expected


def test_openapi_is_published_to_logged_in_people_only(platform):
    assert requests.get(f"{platform.url}/services/himalia/openapi.json", timeout=30).status_code == 401
    r = api_get(platform, "/openapi.json", platform.admin_token)
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/services/himalia/api/v1/whoami" in paths
    assert "/services/himalia/api/v1/health" in paths


def test_browser_reaches_api_through_hub_oauth(platform, unique_name):
    name = unique_name("br")
    session = platform.login(name, platform.create_user(name))
    r = session.get(f"{platform.url}/services/himalia/api/v1/whoami",
                    headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.url, r.text[:300])
    assert r.json()["name"] == name
    assert r.json()["roles"] == ["scientist"]


def test_unapproved_signup_cannot_log_in_until_admin_approves(platform, unique_name):
    name = unique_name("new")
    platform.signup(name, STRONG)
    r = platform.try_login(name, STRONG)
    assert not r.logged_in
    assert "not been approved" in r.text

    admin = platform.login("admin", platform.admin_password) if platform.admin_password else None
    if admin is None:
        pytest.fail("the first start must print the one-time admin password")
    # Approval changes state: a GET (a link, an <img>) must not approve anyone.
    admin.get(f"{platform.url}/hub/authorize/{name}", timeout=30)
    assert not platform.try_login(name, STRONG).logged_in
    r = admin.post(f"{platform.url}/hub/authorize/{name}", data={"_xsrf": admin.headers["X-XSRFToken"]},
                   timeout=30)
    assert r.status_code == 200, r.status_code
    session = platform.login(name, STRONG)
    assert platform.role_of(name) == "scientist"
    assert session.himalia_user == name


def test_admin_changes_a_role(platform, unique_name):
    name = unique_name("rc")
    session = platform.login(name, platform.create_user(name))
    token = platform.user_token(session)["token"]
    assert api_get(platform, "/api/v1/whoami", token).json()["roles"] == ["scientist"]
    result = himalia_cli("users", "role", name, "viewer", "--state-dir", str(platform.state_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name} is now a viewer."
    wait_for(lambda: api_get(platform, "/api/v1/whoami", token).json()["roles"] == ["viewer"], 90,
             interval=1, what="role change to reach the API")
    r = session.post(f"{platform.url}/hub/api/users/{name}/server", json={}, timeout=30)
    assert r.status_code == 403
    # A scientist cannot change roles, their own included.
    sci = platform.user_token(platform.login(n := unique_name("rs"), platform.create_user(n)))["token"]
    r = platform.api("PUT", f"/users/{n}/role", token=sci, json={"role": "admin"})
    assert r.status_code == 403
    assert platform.role_of(n) == "scientist"


def test_profile_choice_reaches_the_server_and_bad_choices_get_400(platform, unique_name):
    name = unique_name("pf")
    session = platform.login(name, platform.create_user(name))
    for forged in ({"profile": "tpu"}, {"profile": "cpu", "cmd": ["/bin/sh"]}):
        r = session.post(f"{platform.url}/hub/api/users/{name}/server", json=forged, timeout=60)
        assert r.status_code == 400, r.text
        assert "cpu, gpu, dask" in r.json()["message"]
    assert not platform.api("GET", f"/users/{name}").json()["servers"]

    server = platform.spawn(session, {"profile": "dask"})
    kernel = Kernel(server, platform.user_token(session)["token"])
    try:
        out = kernel.execute("import os; print(os.environ['HIMALIA_PROFILE'], repr(os.environ['CUDA_VISIBLE_DEVICES']))")
        assert out["stdout"].split() == ["dask", "''"], out
    finally:
        kernel.close()
    platform.stop_server(name)
