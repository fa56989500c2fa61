"""The dashboards routes of the platform API, in-process (the hub stubbed): who sees which
dashboard, publishing and republishing, sharing, linked jobs, and bad input."""

from __future__ import annotations

import dataclasses
import json

import nbformat
import pytest
from fastapi.testclient import TestClient

from himalia.hub.dashboards import service
from himalia.hub.dashboards.models import Dashboard
from himalia.hub.dashboards.service import DashboardSettings
from himalia.hub.services.api import create_app
from unit.test_api_security import PREFIX, TOKENS, db_url, hub, hub_user, settings, token

__all__ = ["db_url", "hub"]  # fixtures used here

API = f"{PREFIX}/api/v1/dashboards"
PEOPLE = {"tok-tess": hub_user("tess", ["team-a"], ["scientist"]),
          "tok-vic": hub_user("vic", ["finance"], ["viewer"]),
          "tok-lea": hub_user("lea", [], ["labeler"])}


def notebook(*cells: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return json.loads(nbformat.writes(nb))


@pytest.fixture
def client(db_url, tmp_path, monkeypatch):
    for name, model in PEOPLE.items():
        monkeypatch.setitem(TOKENS, name, model)
    dashboards = DashboardSettings(public_url="https://himalia.example", users_root=str(tmp_path / "users"))
    app = create_app(dataclasses.replace(settings(db_url), dashboards=dashboards))
    with TestClient(app, follow_redirects=False) as client:
        yield client


def publish(client, who="tok-scientist", status=201, **body):
    body.setdefault("notebook", notebook("1 + 1"))
    r = client.post(API, json=body, headers=token(who))
    assert r.status_code == status, r.text
    return r.json()


def names(client, who: str, **params) -> list[str]:
    r = client.get(API, params=params, headers=token(who))
    assert r.status_code == 200, r.text
    return sorted(d["name"] for d in r.json()["dashboards"])


def test_who_sees_which_dashboard(client):
    publish(client, name="private")
    publish(client, name="to-tess", share={"users": ["tess"]})
    publish(client, name="to-finance", share={"groups": ["finance"]})
    publish(client, name="to-viewers", share={"viewers": True})
    assert names(client, "tok-scientist") == ["private", "to-finance", "to-tess", "to-viewers"]
    assert names(client, "tok-tess") == ["to-tess"]
    assert names(client, "tok-vic") == ["to-finance", "to-viewers"]
    assert names(client, "tok-admin") == ["private", "to-finance", "to-tess", "to-viewers"]
    assert names(client, "tok-scientist", mine=True) == ["private", "to-finance", "to-tess", "to-viewers"]
    # Shared "with every viewer" means viewers: a scientist it is not shared with does not see it.
    assert client.get(f"{API}/to-viewers", headers=token("tok-tess")).status_code == 404
    # Labelers and people without a role get no dashboards at all.
    assert client.get(API, headers=token("tok-lea")).status_code == 403
    assert client.get(API, headers=token("tok-norole")).status_code == 403
    assert client.get(API).status_code == 401
    # A dashboard not shared with you is not revealed.
    r = client.get(f"{API}/private", headers=token("tok-vic"))
    assert r.status_code == 404 and "No dashboard 'private'" in r.json()["message"]


def test_only_scientists_publish_and_only_owners_change(client):
    assert client.post(API, json={"name": "v", "notebook": notebook()}, headers=token("tok-vic")).status_code == 403
    made = publish(client, name="report", title="Report", share={"users": ["tess"]})
    assert made["url"] == "https://himalia.example/services/dashboards/report/"
    assert made["thumbnail_url"] is None and made["freshness"] is None and made["views"] == 0
    for method in ("PATCH", "DELETE"):
        r = client.request(method, f"{API}/report", headers=token("tok-tess"),
                           **({"json": {"title": "mine"}} if method == "PATCH" else {}))
        assert r.status_code == 403 and "Only its owner 'sam'" in r.json()["message"]
    assert client.post(API, json={"name": "report", "notebook": notebook()},
                       headers=token("tok-tess")).status_code == 409
    again = publish(client, name="report", status=200, notebook=notebook("2 + 2"))
    assert again["version"] == 2 and again["title"] == "Report" and again["share"]["users"] == ["tess"]
    versions = client.get(f"{API}/report/versions", headers=token("tok-tess")).json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    nb = client.get(f"{API}/report/notebook", params={"version": 1}, headers=token("tok-scientist"))
    assert "1 + 1" in nb.text
    changed = client.patch(f"{API}/report", json={"share": {"viewers": True}, "description": "d"},
                           headers=token("tok-admin")).json()
    assert changed["share"] == {"users": [], "groups": [], "viewers": True} and changed["description"] == "d"
    assert client.delete(f"{API}/report", headers=token("tok-scientist")).status_code == 204
    assert client.get(f"{API}/report", headers=token("tok-scientist")).status_code == 404


def test_a_republished_name_after_unpublishing_starts_again(client):
    publish(client, name="cycle")
    assert client.delete(f"{API}/cycle", headers=token("tok-scientist")).status_code == 204
    assert publish(client, name="cycle", notebook=notebook("3"))["version"] == 1


def test_bad_input_is_a_clear_4xx_and_writes_nothing(client):
    cases = [
        ({"name": "Has Space"}, 400, "lowercase letters"),
        ({"name": "voila"}, 400, "reserved"),
        ({"name": "x", "notebook": None}, 400, "not both"),
        ({"name": "x", "notebook": "text"}, 400, "nbformat v4 JSON object"),
        ({"name": "x", "notebook": {"nbformat": 4, "cells": 3}}, 400, "not a valid nbformat"),
        ({"name": "x", "path": "../../etc/passwd", "notebook": None}, 403, "outside your files"),
        ({"name": "x", "job_id": 42}, 404, "no job 42"),
        ({"name": "x", "job_id": True}, 400, "job_id"),
        ({"name": "x", "share": {"people": []}}, 400, "unknown field"),
        ({"name": "x", "share": {"viewers": "yes"}}, 400, "share.viewers"),
        ({"name": "x", "title": 3}, 400, "title"),
        ({"name": "x", "extra": 1}, 400, "Unknown field"),
    ]
    for body, status, words in cases:
        if body.get("notebook", "") is None:
            body.pop("notebook")
        else:
            body.setdefault("notebook", notebook())
        r = client.post(API, json=body, headers=token("tok-scientist"))
        assert r.status_code == status and words in r.json()["message"], (body, r.text)
    assert client.post(API, content=b"[1]", headers={**token("tok-scientist"),
                                                      "Content-Type": "application/json"}).status_code == 400
    assert names(client, "tok-scientist") == []


def test_may_view_is_the_one_rule():
    d = Dashboard(name="d", owner="ann", shared_users=["bo"], shared_groups=["g"], shared_viewers=True)
    assert service.may_view(d, "ann", ["scientist"], [])
    assert service.may_view(d, "bo", ["scientist"], [])
    assert service.may_view(d, "cy", ["scientist"], ["g"])
    assert service.may_view(d, "vi", ["viewer"], [])
    assert service.may_view(d, "ad", ["admin"], [])
    assert not service.may_view(d, "cy", ["scientist"], [])
    assert not service.may_view(d, "bo", [], [])
    assert not service.may_view(d, "bo", ["labeler"], ["g"])
    d.shared_viewers = False
    assert not service.may_view(d, "vi", ["viewer"], [])
