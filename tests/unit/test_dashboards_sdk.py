"""``himalia.sdk.Dashboards`` against a scripted stand-in of the platform API on 127.0.0.1: what
each call sends and what it gives back (the real platform is in the integration tests)."""

from __future__ import annotations

import json

import nbformat
import pytest

from himalia.sdk import Client, Dashboards, HimaliaError
from himalia.sdk import dashboards as dashboards_sdk
from himalia.sdk.dashboards import audience, freshness, share_body
from himalia_testing import ScriptedAPI, scripted_api


@pytest.fixture
def platform():
    with scripted_api() as url:
        yield Dashboards(Client(f"{url}/services/himalia/", "user-token"))


def dashboard(**fields) -> dict:
    base = {"id": 1, "name": "churn", "title": "Churn", "description": "", "owner": "ada",
            "job_id": None, "job_name": None,
            "share": {"users": [], "groups": [], "viewers": False}, "version": 1, "views": 0,
            "url": "http://hub.example/services/dashboards/churn/", "thumbnail_url": None,
            "freshness": None, "created": "2026-11-20T10:00:00+00:00",
            "updated": "2026-11-20T10:00:00+00:00"}
    return {**base, **fields}


def notebook_text() -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('hello')")]
    return nbformat.writes(nb)


def sent(index: int = -1) -> tuple:
    method, path, query, body, auth = ScriptedAPI.seen[index]
    assert auth == "token user-token"
    return method, path, query, body


# -- publishing --------------------------------------------------------------------------------
def test_a_local_notebook_is_read_here_and_sent_as_its_json(platform, tmp_path):
    path = tmp_path / "churn_report.ipynb"
    path.write_text(notebook_text())
    ScriptedAPI.script[("POST", "dashboards")] = [(201, dashboard())]

    answer = platform.publish("churn", path, title="Churn", job="nightly",
                              share_users=["bob"], viewers=True)

    assert answer["url"] == "http://hub.example/services/dashboards/churn/"
    method, route, _, body = sent()
    assert (method, route) == ("POST", "dashboards")
    assert body == {"name": "churn", "notebook": json.loads(path.read_text()), "title": "Churn",
                    "job_id": "nightly",
                    "share": {"users": ["bob"], "groups": [], "viewers": True}}


def test_a_path_in_the_home_is_left_to_the_platform_and_a_job_id_is_a_number(platform):
    ScriptedAPI.script[("POST", "dashboards")] = [(200, dashboard(version=2))]

    answer = platform.publish("churn", path="reports/churn.ipynb", job="12")

    assert answer["version"] == 2
    assert sent()[3] == {"name": "churn", "path": "reports/churn.ipynb", "job_id": 12}


def test_a_notebook_dict_is_sent_as_it_is(platform):
    nb = json.loads(notebook_text())
    ScriptedAPI.script[("POST", "dashboards")] = [(201, dashboard())]
    platform.publish("churn", nb, description="weekly")
    assert sent()[3] == {"name": "churn", "notebook": nb, "description": "weekly"}


@pytest.mark.parametrize("kwargs", [{}, {"notebook": {"cells": []}, "path": "a.ipynb"}])
def test_publish_needs_exactly_one_notebook_and_sends_nothing_otherwise(platform, kwargs):
    with pytest.raises(HimaliaError, match="not both"):
        platform.publish("churn", **kwargs)
    assert ScriptedAPI.seen == []


def test_an_unreadable_notebook_is_named_before_anything_is_sent(platform, tmp_path):
    with pytest.raises(HimaliaError, match="cannot read it"):
        platform.publish("churn", tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("not json")
    with pytest.raises(HimaliaError, match="not a notebook's JSON"):
        platform.publish("churn", tmp_path / "bad.ipynb")
    assert ScriptedAPI.seen == []


def test_the_platforms_refusal_comes_back_with_its_status_and_message(platform):
    ScriptedAPI.script[("POST", "dashboards")] = [
        (409, {"status": 409, "message": "name: 'churn' is another person's dashboard"})]
    with pytest.raises(HimaliaError, match="another person's dashboard") as caught:
        platform.publish("churn", {"cells": []})
    assert caught.value.status == 409


# -- reading and changing ----------------------------------------------------------------------
def test_list_reads_every_page(platform, monkeypatch):
    monkeypatch.setattr(dashboards_sdk, "PAGE", 2)
    ScriptedAPI.script[("GET", "dashboards")] = [
        (200, {"dashboards": [dashboard(name="a"), dashboard(name="b")], "offset": 0, "limit": 2}),
        (200, {"dashboards": [dashboard(name="c")], "offset": 2, "limit": 2})]

    names = [d["name"] for d in platform.list(mine=True)]

    assert names == ["a", "b", "c"]
    queries = [q for m, p, q, b, a in ScriptedAPI.seen]
    assert queries == [{"offset": ["0"], "limit": ["2"], "mine": ["true"]},
                       {"offset": ["2"], "limit": ["2"], "mine": ["true"]}]


def test_update_sends_only_what_changes_and_none_unlinks_the_job(platform):
    ScriptedAPI.script[("PATCH", "dashboards/churn")] = [(200, dashboard())]
    platform.update("churn", title="Churn weekly")
    platform.update("churn", job=None)
    platform.update("churn", job="7", description="")
    platform.update("churn", share={"users": [], "groups": ["g"], "viewers": True})
    assert [b for m, p, q, b, a in ScriptedAPI.seen] == [
        {"title": "Churn weekly"}, {"job_id": None}, {"description": "", "job_id": 7},
        {"share": {"users": [], "groups": ["g"], "viewers": True}}]


def test_share_replaces_what_is_given_and_keeps_the_rest(platform):
    current = dashboard(share={"users": ["bob"], "groups": ["sales"], "viewers": False})
    ScriptedAPI.script[("GET", "dashboards/churn")] = [(200, current)]
    ScriptedAPI.script[("PATCH", "dashboards/churn")] = [(200, current)]

    platform.share("churn", viewers=True)
    platform.share("churn", users=[], groups=["finance"], viewers=False)

    patches = [b for m, p, q, b, a in ScriptedAPI.seen if m == "PATCH"]
    assert patches == [{"share": {"users": ["bob"], "groups": ["sales"], "viewers": True}},
                       {"share": {"users": [], "groups": ["finance"], "viewers": False}}]
    # Everything given: nothing to read first.
    assert [m for m, *_ in ScriptedAPI.seen] == ["GET", "PATCH", "PATCH"]


def test_unpublish_and_versions(platform):
    ScriptedAPI.script[("DELETE", "dashboards/churn")] = [(204, b"")]
    ScriptedAPI.script[("GET", "dashboards/churn/versions")] = [(200, {"versions": [
        {"version": 1, "sha256": "ab" * 32, "created": "2026-11-20T10:00:00+00:00"}]})]
    assert platform.unpublish("churn") is None
    assert platform.versions("churn")[0]["version"] == 1
    assert [(m, p) for m, p, *_ in ScriptedAPI.seen] == [
        ("DELETE", "dashboards/churn"), ("GET", "dashboards/churn/versions")]


def test_an_unreachable_platform_says_so():
    client = Dashboards(Client("http://127.0.0.1:9/services/himalia/", "t"))
    with pytest.raises(HimaliaError, match="Cannot reach the platform API") as caught:
        client.list()
    assert caught.value.status == 0


# -- in words ----------------------------------------------------------------------------------
def test_share_body_and_the_words_for_audience_and_freshness():
    assert share_body(None, None, None) == {"users": [], "groups": [], "viewers": False}
    assert share_body(("a",), None, None, {"groups": ["g"], "viewers": True}) == {
        "users": ["a"], "groups": ["g"], "viewers": True}
    assert audience({"users": [], "groups": [], "viewers": False}) == "only you"
    assert audience({"users": ["bob", "eve"], "groups": ["sales"], "viewers": True}) == (
        "everyone with the viewer role; users bob, eve; groups sales")
    assert freshness(dashboard()) == "no linked job"
    assert freshness(dashboard(job_id=3)) == "no successful run yet"
    assert freshness(dashboard(job_id=3, freshness={
        "run_id": 9, "finished_at": "2026-11-20T03:00:00+01:00"})) == "data from 2026-11-20 02:00 UTC (run 9)"
