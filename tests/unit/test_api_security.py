"""Security of the platform API: who may call what, the browser's cookie, XSRF and headers.

The real app from ``create_app`` runs in-process under ``fastapi.testclient.TestClient``, with
its SQLite database in a temporary folder. The hub cannot run in a unit test, so only the hub's
answer about a token is replaced: ``HubOAuth.user_for_token`` is patched to return hub-style
user models, and ``HubOAuth.token_for_code`` to finish the OAuth login; the access scope the
hub gives a managed service is set in the environment, where HubOAuth reads it. The hub and
proxy URLs point at a closed local port, so the health checks report those parts down at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from himalia_testing import free_port
from jupyterhub.services.auth import HubOAuth

from himalia.hub.services.api import APISettings, create_app
from himalia.hub.services.api.__main__ import cookie_secret
from himalia.hub.services.api.app import DOCS_ASSETS, DOCS_CSP
from himalia.hub.services.api.authz import (
    PUBLIC_ROUTES,
    Forbidden,
    allow,
    has_role,
    iter_routes,
    require_owner_or_admin,
    require_role,
    require_shared,
    unprotected_routes,
)
from himalia.hub.services.api.identity import Identity, read_signed_cookie, sign_cookie, xsrf_token
from himalia.hub.storage import upgrade

PREFIX = "/services/himalia"
SECRET = b"unit-test-cookie-secret-32-bytes"
COOKIE = "service-himalia"
SCOPES = ["access:services!service=himalia", "read:users:name!user=self"]


def hub_user(name: str, groups: list[str], roles: list[str]) -> dict:
    return {"kind": "user", "name": name, "admin": False, "groups": groups,
            "roles": ["user", *roles], "scopes": SCOPES}


#: What the hub answers about each token: admins are a group, other roles are hub roles.
TOKENS = {
    "tok-admin": hub_user("ada", ["admins"], []),
    "tok-scientist": hub_user("sam", ["team-a"], ["scientist"]),
    "tok-viewer": hub_user("val", [], ["viewer"]),
    "tok-norole": hub_user("nora", ["book-club"], []),
}
ROLE_TOKENS = {"admin": "tok-admin", "scientist": "tok-scientist", "viewer": "tok-viewer"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate"}
BROWSER = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
#: A page of the same origin (any user's JupyterLab) calling fetch().
SAME_ORIGIN_FETCH = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
NO_ROLE_MESSAGE = "no platform role: ask an administrator to give you one"


@pytest.fixture(autouse=True)
def hub(monkeypatch: pytest.MonkeyPatch) -> None:
    async def user_for_token(self, token, use_cache=True, session_id="", *, sync=True):
        return TOKENS.get(token)

    async def token_for_code(self, code, *, code_verifier=None, sync=True):
        return {"code-sam": "tok-scientist"}[code]

    # What the hub puts in a managed service's environment; HubOAuth reads it.
    monkeypatch.setenv("JUPYTERHUB_OAUTH_ACCESS_SCOPES", json.dumps([SCOPES[0]]))
    monkeypatch.setattr(HubOAuth, "user_for_token", user_for_token)
    monkeypatch.setattr(HubOAuth, "token_for_code", token_for_code)


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    upgrade(url)
    return url


def settings(db_url: str, public_url: str = "") -> APISettings:
    closed = f"http://127.0.0.1:{free_port()}"
    return APISettings(
        prefix=PREFIX + "/",
        hub_api_url=f"{closed}/hub/api",
        api_token="service-token",
        proxy_url=closed,
        db_url=db_url,
        cookie_secret=SECRET,
        public_url=public_url,
    )


def add_post_route(app: FastAPI) -> None:
    """A state-changing route, authorized like every other, for the XSRF rules."""
    router = APIRouter(prefix=PREFIX, dependencies=[Depends(allow())])

    @router.post("/api/v1/echo")
    async def echo(who: Identity = Depends(allow("scientist"))) -> dict:
        return {"name": who.name}

    app.include_router(router)


@pytest.fixture
def app(db_url: str) -> FastAPI:
    app = create_app(settings(db_url))
    add_post_route(app)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def token(name: str) -> dict:
    return {"Authorization": f"token {name}"}


def cookie(value: str, secret: bytes = SECRET) -> dict:
    return {"Cookie": f'{COOKIE}="{sign_cookie(secret, COOKIE, value)}"'}


def post_echo(client: TestClient, headers: dict):
    return client.post(f"{PREFIX}/api/v1/echo", headers=headers)


#: Values that name an existing object, for routes with path parameters; others get "x".
EXAMPLES = {"name": "index.md"}


def fill(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: EXAMPLES.get(m.group(1), "x"), path)


def protected_endpoints(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of ``app.routes`` (included routers flattened) but the
    public ones; path parameters filled from ``EXAMPLES``."""
    public = {PREFIX + p for p in PUBLIC_ROUTES}
    found = []
    for route, path, _ in iter_routes(app):
        assert isinstance(route, APIRoute), f"{route!r} is not an APIRoute: authz cannot see it"
        if path in public:
            continue
        found.extend((method, fill(path)) for method in sorted(route.methods))
    return found


# -- which routes exist --------------------------------------------------------------------


def test_route_list_covers_openapi_document_docs_and_spec(app, client):
    endpoints = {path for _, path in protected_endpoints(app)}
    spec = client.get(f"{PREFIX}/openapi.json", headers=token("tok-viewer")).json()
    documented = {fill(path) for path in spec["paths"]}

    assert {f"{PREFIX}/api/v1/whoami", f"{PREFIX}/api/v1/health"} <= documented
    assert documented <= endpoints
    assert {f"{PREFIX}/docs", f"{PREFIX}/openapi.json", f"{PREFIX}/"} <= endpoints


def test_route_without_authorization_is_reported(app):
    @app.get(f"{PREFIX}/api/v1/leak")
    async def leak() -> dict:
        return {}

    assert unprotected_routes(app, PREFIX) == [f"{PREFIX}/api/v1/leak"]


# -- every route: anonymous, role-less, each role ---------------------------------------------


def test_anonymous_program_gets_401_everywhere(app, client):
    for method, path in protected_endpoints(app):
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json() == {"status": 401, "message": r.json()["message"]}


def test_anonymous_browser_is_sent_to_hub_login_everywhere(app, client):
    for method, path in protected_endpoints(app):
        if method != "GET":
            continue
        r = client.get(path, headers=BROWSER)
        assert r.status_code == 302, (path, r.text)
        assert "/hub/api/oauth2/authorize?" in r.headers["location"], path
        assert "state=" in r.headers["location"], path


def test_user_without_role_gets_403_naming_the_roles_everywhere(app, client):
    for method, path in protected_endpoints(app):
        r = client.request(method, path, headers=token("tok-norole"))
        assert r.status_code == 403, (method, path, r.text)
        message = r.json()["message"]
        assert NO_ROLE_MESSAGE in message, (path, message)
        assert "admin, scientist, viewer" in message and "People page" in message, message


@pytest.mark.parametrize("role", ["admin", "scientist", "viewer"])
def test_every_role_may_call_every_get_route(app, client, role):
    for method, path in protected_endpoints(app):
        if method != "GET":
            continue
        r = client.get(path, headers=token(ROLE_TOKENS[role]))
        assert r.status_code == 200, (role, path, r.text)


def test_stricter_route_refuses_other_roles_with_what_is_needed(client):
    r = post_echo(client, token("tok-viewer"))

    assert r.status_code == 403
    assert r.json()["message"] == (
        "This needs the platform role admin or scientist; 'val' has viewer."
    )


def test_whoami_reports_roles(client):
    r = client.get(f"{PREFIX}/api/v1/whoami", headers=token("tok-scientist"))

    assert r.json() == {
        "name": "sam", "kind": "user", "roles": ["scientist"], "scopes": sorted(SCOPES)
    }


def test_token_without_service_scope_is_403(client):
    TOKENS["tok-noscope"] = {**hub_user("nick", [], ["scientist"]), "scopes": []}
    try:
        r = client.get(f"{PREFIX}/api/v1/whoami", headers=token("tok-noscope"))
    finally:
        del TOKENS["tok-noscope"]

    assert r.status_code == 403
    assert "access:services!service=himalia" in r.json()["message"]


# -- health ----------------------------------------------------------------------------------


def test_health_details_for_admin(client):
    body = client.get(f"{PREFIX}/api/v1/health", headers=token("tok-admin")).json()

    assert body["ok"] is False  # hub and proxy are a closed port
    assert set(body["services"]) >= {"hub", "proxy", "database"}
    assert body["services"]["database"] == {"ok": True, "detail": "sqlite"}
    assert "127.0.0.1" in body["services"]["hub"]["detail"]


@pytest.mark.parametrize("role", ["scientist", "viewer"])
def test_health_without_details_for_other_roles(client, role):
    r = client.get(f"{PREFIX}/api/v1/health", headers=token(ROLE_TOKENS[role]))

    body = r.json()
    assert set(body) == {"ok", "services"}
    assert body["services"]["database"] == {"ok": True}
    assert all(set(part) == {"ok"} for part in body["services"].values()), body
    assert "127.0.0.1" not in r.text


# -- docs and OpenAPI ------------------------------------------------------------------------


def test_docs_page_inlines_the_spec_and_fetches_nothing(client):
    r = client.get(f"{PREFIX}/docs", headers={**token("tok-viewer"), "Accept": "text/html"})

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in r.text
    assert '"spec": {' in r.text and f"{PREFIX}/api/v1/whoami" in r.text
    assert "url: ''" in r.text
    assert r.headers["content-security-policy"] == DOCS_CSP
    assert "frame-ancestors 'none'" in DOCS_CSP and "default-src 'self'" in DOCS_CSP


def test_docs_page_loads_swagger_ui_from_the_api_not_a_cdn(client):
    page = client.get(f"{PREFIX}/docs", headers={**token("tok-viewer"), "Accept": "text/html"}).text
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert sorted(loaded) == sorted(f"{PREFIX}/static/docs/{name}" for name in DOCS_ASSETS)
    assert '"validatorUrl": null' in page
    for url in loaded:
        r = client.get(url, headers=token("tok-viewer"))
        assert r.status_code == 200, (url, r.text[:200])
        assert r.headers["content-type"].startswith(DOCS_ASSETS[url.rsplit("/", 1)[1]])
        assert len(r.content) > 1000


def test_docs_assets_need_a_login_like_every_route(client):
    r = client.get(f"{PREFIX}/static/docs/swagger-ui-bundle.js")

    assert r.status_code == 401
    assert f"{PREFIX}/static/docs/swagger-ui-bundle.js" not in {PREFIX + p for p in PUBLIC_ROUTES}


def test_openapi_lists_routes_under_the_service_prefix(app, client):
    r = client.get(f"{PREFIX}/openapi.json", headers=token("tok-viewer"))

    assert r.headers["content-type"] == "application/json"
    assert all(p.startswith(PREFIX + "/") for p in r.json()["paths"])
    assert app.openapi_url == f"{PREFIX}/openapi.json"


# -- response headers ------------------------------------------------------------------------


@pytest.mark.parametrize("path,headers", [
    ("/api/v1/whoami", token("tok-scientist")),
    ("/api/v1/whoami", {}),
    ("/openapi.json", token("tok-scientist")),
    ("/oauth_callback", {}),
    ("/no/such/route", {}),
])
def test_api_responses_are_sandboxed(client, path, headers):
    r = client.get(PREFIX + path, headers=headers)

    assert r.headers["content-security-policy"] == "sandbox; frame-ancestors 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


def test_unknown_route_is_json_404(client):
    r = client.get(f"{PREFIX}/no/such/route")

    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "message": f"No such route: GET {PREFIX}/no/such/route. "
                   f"The routes are listed at {PREFIX}/docs.",
    }


def test_wrong_method_is_json_405_naming_the_allowed_ones(client):
    r = client.delete(f"{PREFIX}/api/v1/whoami", headers=token("tok-scientist"))

    assert r.status_code == 405
    assert r.json() == {
        "status": 405,
        "message": f"DELETE is not allowed on {PREFIX}/api/v1/whoami; use GET.",
    }
    assert r.headers["allow"] == "GET"
    assert r.headers["content-security-policy"] == "sandbox; frame-ancestors 'none'"


def test_a_routes_own_404_message_is_kept(app, client):
    @app.get(f"{PREFIX}/api/v1/things/{{thing}}", dependencies=[Depends(allow())])
    async def thing(thing: str) -> dict:
        raise HTTPException(404, f"No thing {thing}.")

    r = client.get(f"{PREFIX}/api/v1/things/x", headers=token("tok-scientist"))

    assert r.json() == {"status": 404, "message": "No thing x."}


# -- the browser's cookie --------------------------------------------------------------------


def test_signed_cookie_authenticates_a_navigation(client):
    r = client.get(f"{PREFIX}/api/v1/whoami", headers={**cookie("tok-scientist"), **NAVIGATE})

    assert r.status_code == 200
    assert r.json()["name"] == "sam"
    assert r.headers["content-security-policy"] == "sandbox; frame-ancestors 'none'"


def test_unsigned_cookie_is_anonymous(client):
    r = client.get(f"{PREFIX}/api/v1/whoami", headers={"Cookie": f"{COOKIE}=tok-scientist"})

    assert r.status_code == 401


def test_cookie_signed_with_another_secret_is_anonymous(client):
    r = client.get(f"{PREFIX}/api/v1/whoami", headers=cookie("tok-scientist", b"x" * 32))

    assert r.status_code == 401


def test_cookie_of_a_revoked_token_sends_browser_to_login(client):
    r = client.get(f"{PREFIX}/api/v1/whoami", headers={**cookie("tok-revoked"), **BROWSER})

    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize?" in r.headers["location"]


def log_in(client: TestClient, base: str = "") -> tuple[str, str]:
    """Start at whoami as a browser, come back from the hub; the Set-Cookie headers seen."""
    start = client.get(f"{base}{PREFIX}/api/v1/whoami", headers=BROWSER)
    state = parse_qs(urlparse(start.headers["location"]).query)["state"][0]
    back = client.get(f"{base}{PREFIX}/oauth_callback", params={"code": "code-sam", "state": state})
    assert back.status_code == 302, back.text
    assert back.headers["location"] == f"{PREFIX}/api/v1/whoami"
    session = [c for c in back.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]
    return start.headers["set-cookie"], session[0]


def test_oauth_callback_sets_signed_httponly_lax_cookie(client):
    state_cookie, session_cookie = log_in(client)

    value = session_cookie.split(";")[0].split("=", 1)[1].strip('"')
    assert read_signed_cookie(SECRET, COOKIE, value) == "tok-scientist"
    attributes = session_cookie.lower()
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert f"path={PREFIX}/;" in attributes
    assert "secure" not in attributes and "secure" not in state_cookie.lower()
    r = client.get(f"{PREFIX}/api/v1/whoami", headers=NAVIGATE)
    assert r.json()["name"] == "sam"


def test_cookies_are_secure_when_public_url_is_https(db_url):
    app = create_app(settings(db_url, public_url="https://ml.example.org"))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        state_cookie, session_cookie = log_in(client)

    assert "; secure" in state_cookie.lower()
    assert "; secure" in session_cookie.lower()


def test_oauth_state_mismatch_is_403(client):
    client.get(f"{PREFIX}/api/v1/whoami", headers=BROWSER)
    r = client.get(f"{PREFIX}/oauth_callback", params={"code": "code-sam", "state": "forged"})

    assert r.status_code == 403
    assert r.json() == {"status": 403, "message": "OAuth state mismatch: start the login again."}


def test_oauth_callback_needs_code_and_state(client):
    r = client.get(f"{PREFIX}/oauth_callback", params={"state": "s"})

    assert r.status_code == 400
    assert "'code'" in r.json()["message"]


# -- XSRF ------------------------------------------------------------------------------------


def test_cookie_fetch_without_xsrf_is_403_even_for_get(client):
    r = client.get(
        f"{PREFIX}/api/v1/whoami",
        headers={**cookie("tok-scientist"), **SAME_ORIGIN_FETCH},
    )

    assert r.status_code == 403
    assert "X-XSRFToken" in r.json()["message"]


def test_cookie_no_cors_same_origin_get_needs_no_xsrf(client):
    r = client.get(
        f"{PREFIX}/api/v1/whoami",
        headers={**cookie("tok-scientist"), "Sec-Fetch-Mode": "no-cors",
                 "Sec-Fetch-Site": "same-origin"},
    )

    assert r.status_code == 200


def test_cookie_fetch_with_session_xsrf_token_passes(client):
    r = client.get(
        f"{PREFIX}/api/v1/whoami",
        headers={**cookie("tok-scientist"), **SAME_ORIGIN_FETCH,
                 "X-XSRFToken": xsrf_token(SECRET, "tok-scientist")},
    )

    assert r.status_code == 200


def test_cookie_post_without_xsrf_is_403(client):
    r = post_echo(client, {**cookie("tok-scientist"), **NAVIGATE})

    assert r.status_code == 403
    assert "Missing 'X-XSRFToken' header" in r.json()["message"]


def test_cookie_post_with_another_sessions_xsrf_token_is_403(client):
    admins_xsrf = xsrf_token(SECRET, "tok-admin")
    r = post_echo(client, {**cookie("tok-scientist"), "X-XSRFToken": admins_xsrf})

    assert r.status_code == 403
    assert "does not match" in r.json()["message"]


def test_cookie_post_with_xsrf_token_passes(client):
    session_xsrf = xsrf_token(SECRET, "tok-scientist")
    r = post_echo(client, {**cookie("tok-scientist"), "X-XSRFToken": session_xsrf})

    assert r.status_code == 200
    assert r.json() == {"name": "sam"}


def test_token_header_post_needs_no_xsrf(client):
    r = post_echo(client, {**token("tok-scientist"), **SAME_ORIGIN_FETCH})

    assert r.status_code == 200


# -- the rule helpers ------------------------------------------------------------------------

ALICE = Identity(name="alice", kind="user", roles=["scientist"], groups=["scientists", "vision"])
BOB = Identity(name="bob", kind="user", roles=["viewer"], groups=["viewers"])
ROOT = Identity(name="root", kind="user", roles=["admin"], groups=["admins"])
NOBODY = Identity(name="nobody", kind="user", roles=[])


def test_owner_or_admin():
    require_owner_or_admin(ALICE, "alice")
    require_owner_or_admin(ROOT, "alice")
    with pytest.raises(Forbidden) as e:
        require_owner_or_admin(BOB, "alice", "run 7")
    assert e.value.status_code == 403
    assert e.value.detail == "Only its owner 'alice' or an admin may act on run 7."


def test_shared_with_user_or_group():
    require_shared(BOB, "alice", users=["bob"])
    require_shared(ALICE, "carol", groups=["vision"])
    require_shared(ROOT, "carol")
    with pytest.raises(Forbidden, match="not shared with 'bob'; ask its owner 'alice'"):
        require_shared(BOB, "alice", users=["carol"], groups=["vision"], what="dashboard d1")


def test_roles_admin_passes_every_check():
    assert has_role(ROOT, "viewer") and has_role(ALICE) and not has_role(NOBODY)
    require_role(ALICE, "scientist", "viewer")
    with pytest.raises(Forbidden, match="role admin or scientist; 'bob' has viewer"):
        require_role(BOB, "scientist")
    with pytest.raises(Forbidden, match=NO_ROLE_MESSAGE):
        require_role(NOBODY)


def test_unknown_role_is_a_programming_error():
    with pytest.raises(ValueError, match="valid roles"):
        allow("superuser")


def test_cookie_secret_is_read_as_hex():
    assert cookie_secret({"HIMALIA_API_COOKIE_SECRET": "00ff10"}) == b"\x00\xff\x10"
    assert len(cookie_secret({})) == 32
