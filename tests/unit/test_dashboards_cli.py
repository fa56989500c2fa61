"""``himalia dashboards ...`` against a scripted stand-in of the platform API on 127.0.0.1: what
each verb sends, what a person reads, and one line with exit 1 for every mistake (the real
platform is in the integration tests)."""

from __future__ import annotations

import json

import nbformat
import pytest

from himalia.hub.cli import main
from himalia_testing import ScriptedAPI, scripted_api


@pytest.fixture
def api():
    with scripted_api() as url:
        yield {"HIMALIA_API_URL": f"{url}/services/himalia/", "JUPYTERHUB_API_TOKEN": "user-token"}


def himalia(env: dict, *argv: str) -> int:
    return main(["dashboards", *argv], env=env)


def dashboard(**fields) -> dict:
    base = {"id": 1, "name": "churn", "title": "Churn this week", "description": "", "owner": "ada",
            "job_id": None, "job_name": None,
            "share": {"users": [], "groups": [], "viewers": False}, "version": 1, "views": 4,
            "url": "http://hub.example/services/dashboards/churn/", "thumbnail_url": None,
            "freshness": None, "created": "2026-11-20T10:00:00+00:00",
            "updated": "2026-11-20T10:00:00+00:00"}
    return {**base, **fields}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def bodies(method: str) -> list:
    return [b for m, p, q, b, a in ScriptedAPI.seen if m == method]


def test_list_shows_a_table_and_json_for_programs(api, capsys):
    fresh = dashboard(job_id=3, job_name="nightly",
                      freshness={"run_id": 8, "finished_at": "2026-11-20T02:00:00+00:00"})
    ScriptedAPI.script[("GET", "dashboards")] = [(200, {"dashboards": [fresh], "offset": 0, "limit": 100})]

    assert himalia(api, "list", "--mine") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "TITLE", "OWNER", "VERSION", "VIEWS", "DATA", "URL"]
    assert out[1].startswith("churn  Churn this week  ada")
    assert "data from 2026-11-20 02:00 UTC (run 8)" in out[1] and out[1].endswith("/dashboards/churn/")
    assert ScriptedAPI.seen[0][2]["mine"] == ["true"]

    assert himalia(api, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [fresh]


def test_list_with_nothing_says_how_to_publish(api, capsys):
    ScriptedAPI.script[("GET", "dashboards")] = [(200, {"dashboards": [], "offset": 0, "limit": 100})]
    assert himalia(api, "list") == 0
    assert "himalia dashboards publish NAME NOTEBOOK.ipynb" in capsys.readouterr().out


def test_publish_uploads_the_file_with_its_sharing_and_prints_the_link(api, capsys, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Churn")]
    path = tmp_path / "churn_report.ipynb"
    path.write_text(nbformat.writes(nb))
    shared = dashboard(share={"users": ["bob"], "groups": ["sales"], "viewers": True}, job_id=3)
    ScriptedAPI.script[("POST", "dashboards")] = [(201, shared)]

    assert himalia(api, "publish", "churn", str(path), "--title", "Churn this week", "--job",
                   "nightly", "--users", "bob", "--groups", "sales", "--viewers") == 0

    assert bodies("POST") == [{"name": "churn", "notebook": json.loads(path.read_text()),
                               "title": "Churn this week", "job_id": "nightly",
                               "share": {"users": ["bob"], "groups": ["sales"], "viewers": True}}]
    out = capsys.readouterr().out
    assert out.startswith("Published churn v1 at http://hub.example/services/dashboards/churn/")
    assert "everyone with the viewer role; users bob; groups sales; no successful run yet" in out


def test_publish_a_path_in_the_home_without_sharing_leaves_sharing_alone(api, capsys):
    ScriptedAPI.script[("POST", "dashboards")] = [(200, dashboard(version=2))]
    assert himalia(api, "publish", "churn", "--path", "reports/churn.ipynb") == 0
    assert bodies("POST") == [{"name": "churn", "path": "reports/churn.ipynb"}]
    assert "churn v2" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["publish", "churn"], "Give the notebook file to upload, or --path"),
    (["publish", "churn", "a.ipynb", "--path", "b.ipynb"], "Give the notebook file to upload, or --path"),
    (["publish", "churn", "missing.ipynb"], "missing.ipynb: cannot read it"),
    (["share", "churn"], "Say who may open it"),
])
def test_mistakes_are_one_line_and_send_nothing(api, capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert himalia(api, *argv) == 1
    line = one_line_error(capsys)
    assert line.startswith("himalia: ") and message in line
    assert ScriptedAPI.seen == []


def test_the_platforms_refusal_is_its_message_on_one_line(api, capsys):
    ScriptedAPI.script[("POST", "dashboards")] = [
        (422, {"status": 422, "message": "name: 'Churn!' must be lowercase letters, digits and '-'"})]
    assert himalia(api, "publish", "Churn!", "--path", "churn.ipynb") == 1
    assert one_line_error(capsys) == (
        "himalia: name: 'Churn!' must be lowercase letters, digits and '-'")


def test_share_changes_only_what_is_given(api, capsys):
    current = dashboard(share={"users": ["bob"], "groups": [], "viewers": True})
    ScriptedAPI.script[("GET", "dashboards/churn")] = [(200, current)]
    ScriptedAPI.script[("PATCH", "dashboards/churn")] = [(200, dashboard(
        share={"users": ["bob"], "groups": ["finance"], "viewers": False}))]

    assert himalia(api, "share", "churn", "--groups", "finance", "--no-viewers") == 0

    assert bodies("PATCH") == [{"share": {"users": ["bob"], "groups": ["finance"], "viewers": False}}]
    assert "shared with users bob; groups finance" in capsys.readouterr().out


def test_unpublish_and_versions(api, capsys):
    ScriptedAPI.script[("DELETE", "dashboards/churn")] = [(204, b"")]
    ScriptedAPI.script[("GET", "dashboards/churn/versions")] = [(200, {"versions": [
        {"version": 1, "sha256": "a" * 64, "created": "2026-11-20T10:00:00+00:00"},
        {"version": 2, "sha256": "b" * 64, "created": "2026-11-21T10:00:00+00:00"}]})]

    assert himalia(api, "unpublish", "churn") == 0
    assert "Unpublished churn" in capsys.readouterr().out
    assert himalia(api, "versions", "churn") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["VERSION", "SHA256", "CREATED"]
    assert out[2].split() == ["2", "b" * 12, "2026-11-21T10:00:00+00:00"]


def test_an_unknown_dashboard_is_the_platforms_404_on_one_line(api, capsys):
    assert himalia(api, "versions", "nope") == 1
    assert one_line_error(capsys) == "himalia: dashboards/nope/versions does not exist"
