"""``himalia jobs ...`` and ``%schedule`` without a platform: argument parsing, whose token the
CLI uses, and what a person sees, against a scripted stand-in of the API on 127.0.0.1 (the real
platform is in tests/integration/test_jobs_faces.py)."""

from __future__ import annotations

import json

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.hub.cli import CLIError, main
from himalia.hub.cli import jobs as jobs_cli
from himalia.hub.config import StatePaths
from himalia.magics.jobs import job_name, parse_parameters, server_path
from himalia_testing import ScriptedAPI, free_port, scripted_api

PREFIX = "/services/himalia/api/v1/"


# -- a scripted stand-in of the platform API ---------------------------------------------------
@pytest.fixture
def api(monkeypatch):
    monkeypatch.setattr(jobs_cli, "FOLLOW_INTERVAL", 0.01)
    with scripted_api() as url:
        yield {"HIMALIA_API_URL": f"{url}/services/himalia/", "JUPYTERHUB_API_TOKEN": "user-token"}


def himalia(env: dict, *argv: str) -> int:
    return main(["jobs", *argv], env=env)


def job(**fields) -> dict:
    base = {"id": 3, "name": "report", "owner": "ada", "version": 1, "schedule": None,
            "timezone": "UTC", "profile": "", "timeout_seconds": 3600, "max_retries": 0,
            "retry_backoff_seconds": 60, "concurrency": 1, "notify": {}, "keep_runs": 50,
            "paused": False, "published": False, "inputs": [], "source_path": "",
            "next_runs": [], "parameters": {"n": {"type": "int", "default": 3, "help": ""}}}
    return {**base, **fields}


def run(state: str, done: int = 0, total: int = 0, **fields) -> dict:
    return {"id": 7, "job_id": 3, "job": "report", "version": 1, "trigger": "manual",
            "state": state, "reason": "", "error": None, "started_at": None,
            "duration_seconds": None, "progress": {"cells_done": done, "cells_total": total},
            **fields}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    return err[-1]


# -- --param ---------------------------------------------------------------------------------
def test_param_values_are_json_when_they_parse_and_text_otherwise():
    assert parse_parameters(["n=4", "rate=0.5", "label=typed", "flag=true", 'tags=["a", "b"]',
                             "expr=a=b", "empty=", "quoted=\"4\"", "nan=NaN"]) == {
        "n": 4, "rate": 0.5, "label": "typed", "flag": True, "tags": ["a", "b"],
        "expr": "a=b", "empty": "", "quoted": "4", "nan": "NaN"}
    assert parse_parameters(None) == {}


@pytest.mark.parametrize("bad", ["oops", "=3", " =3"])
def test_a_param_without_a_name_is_refused(bad):
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_parameters([bad])


def test_a_bad_param_is_one_line_before_anything_is_sent(api, capsys):
    assert himalia(api, "run", "report", "--param", "oops") == 1
    assert one_line_error(capsys) == "himalia: --param takes NAME=VALUE, got 'oops'"
    assert ScriptedAPI.seen == []


# -- whose token -------------------------------------------------------------------------------
def state_dir(tmp_path, runtime: dict, token: str | None = "admin-secret"):
    paths = StatePaths(tmp_path / "state")
    paths.runtime.parent.mkdir(parents=True)
    paths.runtime.write_text(json.dumps(runtime))
    if token is not None:
        paths.admin_token.write_text(token + "\n")
    return str(paths.root)


def args(env: dict, state: str | None = None):
    return jobs_cli.argparse.Namespace(env=env, state_dir=state)


def test_a_terminal_of_a_users_server_uses_its_own_token(tmp_path):
    env = {"HIMALIA_API_URL": "http://hub.example:8000/services/himalia/", "JUPYTERHUB_API_TOKEN": "t"}
    client, admin = jobs_cli.client_from(args(env))
    assert client.api_url == env["HIMALIA_API_URL"] and not admin
    assert client._headers["Authorization"] == "token t"


def test_without_a_user_token_the_state_directory_gives_the_admin_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = state_dir(tmp_path, {"api_port": 41234, "url": "https://ml.example"})
    (tmp_path / ".himalia").symlink_to(state)
    for env in ({}, {"HIMALIA_API_URL": "http://x/"}, {"JUPYTERHUB_API_TOKEN": "t"}):
        client, admin = jobs_cli.client_from(args(env))  # the default ./.himalia
        assert client.api_url == "http://127.0.0.1:41234/services/himalia/" and admin
        assert client._headers["Authorization"] == "token admin-secret"


def test_an_explicit_state_dir_wins_over_the_environment(tmp_path):
    state = state_dir(tmp_path, {"api_port": 41235})
    env = {"HIMALIA_API_URL": "http://hub.example/services/himalia/", "JUPYTERHUB_API_TOKEN": "t"}
    client, admin = jobs_cli.client_from(args(env, state))
    assert client.api_url == "http://127.0.0.1:41235/services/himalia/" and admin


def test_without_the_api_port_the_proxy_address_is_used(tmp_path):
    state = state_dir(tmp_path, {"local_url": "http://127.0.0.1:8000", "url": "https://ml.example"})
    assert jobs_cli.client_from(args({}, state))[0].api_url == "http://127.0.0.1:8000/services/himalia/"


def test_no_state_and_no_token_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert himalia({}, "list") == 1
    assert one_line_error(capsys) == (f"himalia: No himalia state in {tmp_path / '.himalia'}: run "
                                      "'himalia up --state-dir .himalia' first.")


def test_a_state_dir_without_its_admin_token_is_one_line(tmp_path):
    state = state_dir(tmp_path, {"api_port": 1}, token=None)
    with pytest.raises(CLIError, match="No admin token"):
        jobs_cli.client_from(args({}, state))


def test_the_admin_token_cannot_own_a_job(tmp_path, capsys):
    state = state_dir(tmp_path, {"api_port": free_port()})
    nb = tmp_path / "nb.ipynb"
    nb.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    assert himalia({}, "create", "report", str(nb), "--state-dir", state) == 1
    assert "a job belongs to the person who creates it" in one_line_error(capsys)


def test_an_unreachable_platform_is_one_line(capsys):
    env = {"HIMALIA_API_URL": f"http://127.0.0.1:{free_port()}/services/himalia/",
           "JUPYTERHUB_API_TOKEN": "t"}
    assert himalia(env, "list") == 1
    line = one_line_error(capsys)
    assert line.startswith("himalia: Cannot reach the platform API") and "is himalia up running?" in line


# -- commands against the stand-in -------------------------------------------------------------
def test_create_uploads_the_notebook_with_typed_defaults_schedule_inputs_and_notify(api, tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("n = 3")]
    path = tmp_path / "report.ipynb"
    path.write_text(nbformat.writes(nb))
    ScriptedAPI.script[("POST", "jobs")] = [(201, job(schedule="0 2 * * *", timezone="Europe/Paris",
                                                  next_runs=["2026-11-21T02:00:00+01:00"]))]
    assert himalia(api, "create", "report", str(path), "--param", "n=5", "--param", "label=x",
                   "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--timeout", "60",
                   "--retries", "2", "--backoff", "5", "--input", "data/a.csv", "--input", "b.csv",
                   "--webhook", "http://hooks.example/x", "--email", "a@example.org", "--paused") == 0
    method, route, _, body, auth = ScriptedAPI.seen[0]
    assert (method, route, auth) == ("POST", "jobs", "token user-token")
    assert body == {"name": "report", "notebook": json.loads(path.read_text()),
                    "parameters": {"n": 5, "label": "x"}, "schedule": "0 2 * * *",
                    "timezone": "Europe/Paris", "timeout_seconds": 60, "max_retries": 2,
                    "retry_backoff_seconds": 5, "inputs": ["data/a.csv", "b.csv"],
                    "notify": {"webhook": "http://hooks.example/x", "email": ["a@example.org"],
                               "on": ["failure"]},
                    "paused": True}
    out = capsys.readouterr().out
    assert "Created job report (id 3)" in out and "0 2 * * * (Europe/Paris)" in out
    assert "2026-11-21 02:00 (Europe/Paris)" in out and "n: int = 3" in out


def test_create_sends_only_what_was_given(api, tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    ScriptedAPI.script[("POST", "jobs")] = [(201, job())]
    assert himalia(api, "create", "plain", str(path)) == 0
    assert set(ScriptedAPI.seen[0][3]) == {"name", "notebook"}


@pytest.mark.parametrize("content, expected", [(None, "No such file"), ("{not json", "not a notebook's JSON")])
def test_a_missing_or_broken_notebook_file_is_one_line(api, tmp_path, capsys, content, expected):
    path = tmp_path / "nb.ipynb"
    if content is not None:
        path.write_text(content)
    assert himalia(api, "create", "x", str(path)) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"himalia: {path}: ") and expected in line
    assert ScriptedAPI.seen == []


def test_the_apis_refusal_is_its_message_on_one_line(api, tmp_path, capsys):
    path = tmp_path / "nb.ipynb"
    path.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    message = "schedule: 'every day' is not a cron expression; use five fields\n'minute hour ...'"
    ScriptedAPI.script[("POST", "jobs")] = [(422, {"status": 422, "message": message})]
    assert himalia(api, "create", "x", str(path), "--cron", "every day") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("himalia: schedule: 'every day' is not a cron expression; use five "
                            "fields 'minute hour ...'\n")


def test_run_follow_shows_cells_done_and_exits_0_when_it_succeeds(api, capsys):
    ScriptedAPI.script[("POST", "jobs/report/runs")] = [(201, run("queued"))]
    ScriptedAPI.script[("GET", "runs/7")] = [(200, run("queued")), (200, run("running", 1, 3)),
                                         (200, run("running", 2, 3)),
                                         (200, run("succeeded", 3, 3, duration_seconds=2.5))]
    assert himalia(api, "run", "report", "--param", "n=9", "--follow") == 0
    assert ScriptedAPI.seen[0][3] == {"parameters": {"n": 9}}
    captured = capsys.readouterr()
    assert "Run 7 of report queued." in captured.out
    assert "Run 7 of report succeeded in 2.5s." in captured.out
    assert "3/3" in captured.err and "cell" in captured.err


def test_run_follow_of_a_failing_run_exits_1_with_its_reason_on_one_line(api, capsys):
    ScriptedAPI.script[("POST", "jobs/report/runs")] = [(201, run("queued"))]
    ScriptedAPI.script[("GET", "runs/7")] = [
        (200, run("running", 1, 3)),
        (200, run("failed", 2, 3, reason="cell 2 raised ValueError: bad data\nsecond line"))]
    assert himalia(api, "run", "report", "--follow") == 1
    assert one_line_error(capsys) == ("himalia: run 7 of report failed: cell 2 raised ValueError: "
                                      "bad data second line (himalia jobs logs 7)")


def test_run_without_follow_returns_at_once(api, capsys):
    ScriptedAPI.script[("POST", "jobs/3/runs")] = [(201, run("queued"))]
    assert himalia(api, "run", "3") == 0
    assert [s[:2] for s in ScriptedAPI.seen] == [("POST", "jobs/3/runs")]
    assert "himalia jobs logs 7" in capsys.readouterr().out


def test_owner_slash_name_finds_another_persons_job_by_id(api, capsys):
    ScriptedAPI.script[("GET", "jobs/report")] = [(200, job(id=11, owner="bob"))]
    ScriptedAPI.script[("PATCH", "jobs/11")] = [(200, job(id=11, owner="bob", paused=True))]
    assert himalia(api, "pause", "bob/report") == 0
    assert ScriptedAPI.seen[0][2] == {"owner": ["bob"]}
    assert ScriptedAPI.seen[1][:2] == ("PATCH", "jobs/11") and ScriptedAPI.seen[1][3] == {"paused": True}
    assert "Paused job report" in capsys.readouterr().out


def test_list_is_a_table_and_json_for_programs(api, capsys):
    jobs = [job(), job(id=4, name="nightly", schedule="0 2 * * *", next_runs=["2026-11-21T02:00:00+00:00"])]
    ScriptedAPI.script[("GET", "jobs")] = [(200, {"jobs": jobs, "offset": 0, "limit": 100})]
    assert himalia(api, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "OWNER", "SCHEDULE", "STATUS", "NEXT", "RUN", "VERSION"]
    assert lines[1].split()[:5] == ["3", "report", "ada", "-", "manual"]
    assert "0 2 * * * (UTC)" in lines[2] and "scheduled" in lines[2] and "2026-11-21 02:00" in lines[2]
    assert himalia(api, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == jobs


def test_show_gives_the_definition_and_the_last_runs(api, capsys):
    ScriptedAPI.script[("GET", "jobs/report")] = [(200, job())]
    ScriptedAPI.script[("GET", "jobs/3/runs")] = [(200, {"runs": [
        run("failed", 1, 2, reason="cell 1 raised KeyError: 'x'", started_at="2026-11-20T10:00:00+00:00",
            duration_seconds=1.25),
        run("succeeded", 2, 2, id=6)]})]
    assert himalia(api, "show", "report", "--runs", "2") == 0
    out = capsys.readouterr().out
    assert "Job report (id 3, owner ada, version 1)" in out and "schedule:   none (it runs when started)" in out
    assert "Last 2 runs:" in out
    failed = next(line for line in out.splitlines() if line.startswith("7 "))
    assert failed.split()[:3] == ["7", "failed", "manual"] and "1.2s" in failed and "1/2" in failed
    assert "cell 1 raised KeyError" in failed
    assert ScriptedAPI.seen[1][2] == {"offset": ["0"], "limit": ["2"]}
    assert himalia(api, "show", "report", "--json") == 0
    assert json.loads(capsys.readouterr().out)["job"]["name"] == "report"


def test_logs_cancel_rerun_resume_delete(api, capsys):
    ScriptedAPI.script[("GET", "runs/7/logs")] = [(200, "==> runner.log <==\nstarted\n")]
    ScriptedAPI.script[("POST", "runs/7/cancel")] = [(200, run("running", cancel_requested=True))]
    ScriptedAPI.script[("POST", "runs/7/rerun")] = [(201, run("queued", id=8))]
    ScriptedAPI.script[("PATCH", "jobs/report")] = [(200, job(schedule="0 2 * * *", next_runs=["2026-11-21T02:00:00+00:00"]))]
    ScriptedAPI.script[("DELETE", "jobs/report")] = [(204, "")]
    assert himalia(api, "logs", "7") == 0
    assert capsys.readouterr().out == "==> runner.log <==\nstarted\n"
    assert himalia(api, "cancel", "7") == 0
    assert "is being cancelled" in capsys.readouterr().out
    assert himalia(api, "rerun", "7") == 0
    assert "Run 8 of report queued: run 7 again" in capsys.readouterr().out
    assert himalia(api, "resume", "report") == 0
    assert "next run 2026-11-21 02:00 (UTC)" in capsys.readouterr().out
    assert himalia(api, "delete", "report") == 0
    assert "Deleted job report" in capsys.readouterr().out
    assert [s[:2] for s in ScriptedAPI.seen] == [("GET", "runs/7/logs"), ("POST", "runs/7/cancel"),
                                              ("POST", "runs/7/rerun"), ("PATCH", "jobs/report"),
                                              ("DELETE", "jobs/report")]


def test_a_run_id_must_be_a_number(api, capsys):
    with pytest.raises(SystemExit) as stopped:
        himalia(api, "logs", "seven")
    assert stopped.value.code == 2 and "invalid int value: 'seven'" in capsys.readouterr().err


# -- %schedule's own checks --------------------------------------------------------------------
@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    magics = shell.magics_manager.registry["JobMagics"]
    magics.client_factory = lambda: pytest.fail("the platform must not be called")
    return shell


def test_schedule_help_needs_no_platform(ip, capsys):
    ip.run_line_magic("schedule", "--help")
    out = capsys.readouterr().out
    assert "--cron" in out and "--now" in out and "Copy Path" in out


def test_schedule_bad_param_is_a_usage_error(ip):
    with pytest.raises(UsageError, match=r"^%schedule: --param takes NAME=VALUE, got 'n'$"):
        ip.run_line_magic("schedule", "nb.ipynb --param n")


def test_schedule_without_a_path_needs_the_kernels_notebook(ip, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(UsageError, match="does not know its notebook"):
        ip.run_line_magic("schedule", "--cron '0 2 * * *'")


def test_paths_are_relative_to_the_home_and_names_come_from_the_file():
    env = {"HOME": "/home/ada"}
    assert server_path("/home/ada/reports/churn.ipynb", env) == "reports/churn.ipynb"
    assert server_path("reports/churn.ipynb", env) == "reports/churn.ipynb"
    assert server_path("/srv/elsewhere.ipynb", env) == "/srv/elsewhere.ipynb"  # the API refuses it
    assert job_name("reports/Churn report (v2).ipynb") == "Churn-report-v2"
    assert job_name("...ipynb") == "notebook"


def test_schedule_reads_quoted_values_as_a_shell_would(ip, api, monkeypatch, capsys):
    from himalia.sdk import Client

    ip.magics_manager.registry["JobMagics"].client_factory = lambda: Client(
        api["HIMALIA_API_URL"], api["JUPYTERHUB_API_TOKEN"])
    ScriptedAPI.script[("POST", "jobs")] = [(201, job(name="a-b", schedule="0 2 * * *"))]
    monkeypatch.setenv("HOME", "/home/ada")
    ip.run_line_magic("schedule", "'/home/ada/work/a b.ipynb' --cron '0 2 * * *' --tz \"UTC\" "
                                  "--param label='a b' --param 'n=4' --param s='\"4\"' --input 'x y.csv'")
    assert ScriptedAPI.seen[0][3] == {"name": "a-b", "path": "work/a b.ipynb", "schedule": "0 2 * * *",
                                  "timezone": "UTC", "parameters": {"label": "a b", "n": 4, "s": "4"},
                                  "inputs": ["x y.csv"]}


@pytest.mark.parametrize("line, message", [
    ("nb.ipynb --cron '0 2 * * *", "No closing quotation"),
    ("nb.ipynb --colour red", "unrecognized arguments: --colour red"),
    ("nb.ipynb --timeout soon", "argument --timeout: invalid int value: 'soon'"),
])
def test_schedule_line_mistakes_point_to_help(ip, line, message):
    with pytest.raises(UsageError, match=rf"^%schedule: {message} \(see %schedule --help\)$"):
        ip.run_line_magic("schedule", line)
