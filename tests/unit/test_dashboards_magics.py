"""``%publish`` in a real IPython shell against a scripted stand-in of the platform API on
127.0.0.1 (the client chosen through the magic's configuration): which notebook it sends, the
link it shows, and ``UsageError`` for every mistake (the real platform is in the integration
tests)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.magics.base import himalia_magics
from himalia.magics.dashboards import local_notebook, render_link
from himalia.sdk import Client
from himalia_testing import ScriptedAPI, scripted_api


def dashboard(**fields) -> dict:
    base = {"id": 1, "name": "churn", "title": "Churn <weekly>", "description": "", "owner": "ada",
            "job_id": 3, "job_name": "nightly",
            "share": {"users": [], "groups": [], "viewers": True}, "version": 2, "views": 11,
            "url": "http://hub.example/services/dashboards/churn/", "thumbnail_url": None,
            "freshness": {"run_id": 8, "finished_at": "2026-11-20T02:00:00+00:00"},
            "created": "2026-11-20T10:00:00+00:00", "updated": "2026-11-20T10:00:00+00:00"}
    return {**base, **fields}


def write_notebook(path: Path, source: str) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb))
    return json.loads(path.read_text())


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder holding reports/churn.ipynb, the kernel's notebook, the kernel in reports/."""
    home = tmp_path / "home"
    (home / "reports").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HIMALIA_SERVER_ROOT", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "reports/churn.ipynb")
    monkeypatch.chdir(home / "reports")
    return home


@pytest.fixture
def ip(home):
    with scripted_api() as url:
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "himalia.magics")
        magics = shell.magics_manager.registry["DashboardMagics"]
        saved = magics.client_factory
        magics.client_factory = lambda: Client(f"{url}/services/himalia/", "kernel-token")
        try:
            yield shell
        finally:
            magics.client_factory = saved


def test_publish_sends_this_notebook_as_saved_and_shows_its_link(ip, home, capsys):
    nb = write_notebook(home / "reports" / "churn.ipynb", "print('churn')")
    ScriptedAPI.script[("POST", "dashboards")] = [(201, dashboard())]

    ip.run_line_magic("publish", "churn --title 'Churn weekly' --job nightly")

    method, path, _, body, auth = ScriptedAPI.seen[-1]
    assert (method, path, auth) == ("POST", "dashboards", "token kernel-token")
    assert body == {"name": "churn", "notebook": nb, "title": "Churn weekly", "job_id": "nightly"}
    out = capsys.readouterr().out
    assert "Dashboard 'churn' (Churn <weekly>) at http://hub.example/services/dashboards/churn/" in out
    assert "version 2 · data from 2026-11-20 02:00 UTC (run 8) · shared with everyone with the viewer role" in out


def test_another_notebook_and_its_sharing(ip, home):
    other = write_notebook(home / "other.ipynb", "1 + 1")
    ScriptedAPI.script[("POST", "dashboards")] = [(201, dashboard())]

    ip.run_line_magic("publish", "sales --notebook other.ipynb --share-users bob,eve --share-groups sales")

    body = ScriptedAPI.seen[-1][3]
    assert body["notebook"] == other
    assert body["share"] == {"users": ["bob", "eve"], "groups": ["sales"], "viewers": False}


def test_the_link_is_html_in_a_notebook_and_escaped():
    shown = render_link(dashboard())
    assert shown["text/html"].startswith(
        "<div class='himalia-dashboard'><a href='http://hub.example/services/dashboards/churn/' "
        "target='_blank' rel='noopener'>Churn &lt;weekly&gt;</a>")


def test_list_and_unpublish(ip, capsys):
    ScriptedAPI.script[("GET", "dashboards")] = [(200, {"dashboards": [dashboard()], "offset": 0,
                                                        "limit": 100})]
    ScriptedAPI.script[("DELETE", "dashboards/churn")] = [(204, b"")]

    ip.run_line_magic("publish", "--list")
    out = capsys.readouterr().out
    assert "Dashboards" in out and "churn" in out and "11" in out
    ip.run_line_magic("publish", "--unpublish churn")
    assert "'churn' is unpublished" in capsys.readouterr().out
    assert [(m, p) for m, p, *_ in ScriptedAPI.seen] == [("GET", "dashboards"), ("DELETE", "dashboards/churn")]


@pytest.mark.parametrize("line, message", [
    ("", "give NAME to publish, or --list, or --unpublish NAME"),
    ("churn --list", "give NAME to publish, or --list, or --unpublish NAME"),
    ("churn extra", "unrecognized arguments: extra"),
    ("churn --notebook nowhere.ipynb", "no notebook at"),
    ("churn --colour red", "unrecognized arguments: --colour red"),
])
def test_mistakes_are_usage_errors_and_send_nothing(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("publish", line)
    assert ScriptedAPI.seen == []


def test_an_unsaved_notebook_asks_to_save_first(ip, home):
    with pytest.raises(UsageError, match=r"no notebook at .*churn.ipynb \(save it first\)"):
        ip.run_line_magic("publish", "churn")


def test_the_platforms_refusal_is_a_usage_error_with_its_message(ip, home):
    write_notebook(home / "reports" / "churn.ipynb", "1")
    ScriptedAPI.script[("POST", "dashboards")] = [
        (409, {"status": 409, "message": "name: 'churn' is another person's dashboard"})]
    with pytest.raises(UsageError, match=r"^%publish: name: 'churn' is another person's dashboard$"):
        ip.run_line_magic("publish", "churn")


def test_help_needs_no_platform_and_publish_is_among_the_himalia_magics(ip, capsys):
    ip.run_line_magic("publish", "--help")
    assert "--share-groups GROUPS" in capsys.readouterr().out
    assert "%publish" in [name for name, _ in himalia_magics(ip)]
    assert ScriptedAPI.seen == []


def test_which_notebook(tmp_path):
    root = tmp_path / "home"
    write_notebook(root / "a" / "n.ipynb", "1")
    env = {"HOME": str(root), "JPY_SESSION_NAME": "a/n.ipynb"}
    assert local_notebook(None, env, cwd=tmp_path) == root / "a" / "n.ipynb"
    assert local_notebook(None, {**env, "JPY_SESSION_NAME": str(root / "a" / "n.ipynb")},
                          cwd=tmp_path) == root / "a" / "n.ipynb"
    assert local_notebook("n.ipynb", env, cwd=root / "a") == root / "a" / "n.ipynb"
    assert local_notebook("a/n.ipynb", env, cwd=tmp_path) == root / "a" / "n.ipynb"
    with pytest.raises(UsageError, match="does not know its notebook"):
        local_notebook(None, {"HOME": str(root)})
