"""Who may call the feature store's routes (``/api/v1/features``): the real app with the feature
store mounted, the hub's answer about tokens replaced as in test_api_security (the hub cannot
run in a unit test), Feast's SQL registry in the app's own SQLite database."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from himalia.hub.features.repo import FeatureSettings, online_config
from himalia.hub.services.api import create_app
from himalia.hub.services.api.identity import xsrf_token
from unit.test_api_security import (NO_ROLE_MESSAGE, PREFIX, SAME_ORIGIN_FETCH, SECRET, cookie,
                                    db_url, hub, protected_endpoints, settings, token)

__all__ = ["db_url", "hub"]  # fixtures used here


@pytest.fixture
def client(db_url, tmp_path):
    features = FeatureSettings(root=tmp_path / "features", registry_url=db_url,
                               online=online_config("sqlite", tmp_path / "features"),
                               users_root=str(tmp_path / "users"))
    app = create_app(dataclasses.replace(settings(db_url), features=features))
    with TestClient(app, follow_redirects=False) as client:
        client.feature_routes = [(m, p) for m, p in protected_endpoints(app)
                                 if p.startswith(f"{PREFIX}/api/v1/features")]
        yield client


def test_every_features_route_refuses_anonymous_role_less_and_viewers(client):
    routes = client.feature_routes
    assert len(routes) >= 12
    for method, path in routes:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        r = client.request(method, path, headers=token("tok-norole"))
        assert r.status_code == 403 and NO_ROLE_MESSAGE in r.json()["message"], (method, path)
        r = client.request(method, path, headers=token("tok-viewer"))
        assert r.status_code == 403, (method, path, r.text)
        assert "scientist" in r.json()["message"], (method, path)


def test_scientists_and_admins_read_the_catalog(client):
    for who in ("tok-scientist", "tok-admin"):
        r = client.get(f"{PREFIX}/api/v1/features", headers=token(who))
        assert r.status_code == 200, r.text
        assert r.json()["views"] == [] and r.json()["entities"] == []


def test_a_cookie_caller_needs_the_xsrf_token(client):
    body = {"objects": [{"kind": "entity", "proto": ""}]}
    r = client.post(f"{PREFIX}/api/v1/features/plan", json=body,
                    headers={**cookie("tok-scientist"), **SAME_ORIGIN_FETCH})
    assert r.status_code == 403 and "X-XSRFToken" in r.json()["message"]
    r = client.post(f"{PREFIX}/api/v1/features/plan", json=body,
                    headers={**cookie("tok-scientist"), **SAME_ORIGIN_FETCH,
                             "X-XSRFToken": xsrf_token(SECRET, "tok-scientist")})
    # Past authentication: the body itself is what is wrong now, and the answer says so.
    assert r.status_code == 422 and "Entity name" in r.json()["message"]


def test_bad_bodies_are_4xx_with_what_to_send(client):
    h = token("tok-scientist")
    cases = [
        ("POST", "/features/apply", {"objects": "x"}, 422, "non-empty list"),
        ("POST", "/features/specs", {"refs": []}, 422, "view:feature"),
        ("POST", "/features/online", {"refs": ["a:b"], "entities": []}, 422, "join key"),
        ("GET", "/features/views/nope", None, 404, "none is defined yet"),
        ("POST", "/features/materializations", {"view": "nope"}, 404, "No feature view"),
    ]
    for method, path, body, status, text in cases:
        r = client.request(method, f"{PREFIX}/api/v1{path}", json=body, headers=h)
        assert r.status_code == status, (path, r.text)
        assert text in r.json()["message"], (path, r.json())
    r = client.put(f"{PREFIX}/api/v1/features/materializations/1/rows", content=b"x",
                   headers={**h, "Content-Type": "application/octet-stream"})
    assert r.status_code == 415 and "Arrow" in r.json()["message"]
