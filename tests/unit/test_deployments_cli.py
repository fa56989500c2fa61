"""``himalia deploy|promote|rollback|undeploy|deployments|logs|deploy-key`` without a platform:
argument parsing, one-line errors and what a person sees, against a scripted stand-in of the API
on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from himalia.hub.cli import build_parser, main
from himalia.hub.cli import deployments as deployments_cli
from himalia.hub.cli import platform as platform_cli
from himalia.hub.config import StatePaths
from himalia_testing import ScriptedAPI, free_port, scripted_api

PREFIX = "/services/himalia/api/v1/"


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setattr(deployments_cli, "WAIT_INTERVAL", 0.01)
    with scripted_api() as url:
        yield {"HIMALIA_API_URL": f"{url}/services/himalia/", "JUPYTERHUB_API_TOKEN": "user-token"}


def version(number: int = 2, state: str = "building", **fields) -> dict:
    return {"version": number, "state": state, "reason": None, "model_uri": "models:/m-1",
            "traffic": 0, "replicas": 1, "created_by": "ada", **fields}


def deployment(*versions: dict, **fields) -> dict:
    return {"id": 1, "name": "churn", "owner": "ada", "url": "/models/churn/", "shared_with": [],
            "health": "serving", "versions": list(versions), **fields}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    return err[-1]


# -- parsing -----------------------------------------------------------------------------------
def test_status_is_the_platforms_and_with_a_name_a_deployments():
    parser = build_parser()
    assert parser.parse_args(["status"]).func is platform_cli.cmd_status
    assert parser.parse_args(["deployments", "churn"]).func is deployments_cli.cmd_deployments


@pytest.mark.parametrize("argv, message", [
    (["deploy", "churn"], "the following arguments are required: --model"),
    (["deploy", "churn", "--model", "m", "--canary", "half"], "argument --canary: invalid int value: 'half'"),
    (["logs", "churn", "--version", "two"], "argument --version: invalid int value: 'two'"),
    (["deploy-key", "revoke", "churn", "first"], "argument ID: invalid int value: 'first'"),
    (["deploy-key", "create", "churn"], "the following arguments are required: --label"),
    (["deploy-key"], "the following arguments are required: VERB"),
])
def test_argument_mistakes_exit_2_saying_what_is_wrong(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        main(argv, env={})
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_admin_token_cannot_own_a_deployment(tmp_path, capsys):
    paths = StatePaths(tmp_path / "state")
    paths.runtime.parent.mkdir(parents=True)
    paths.runtime.write_text(json.dumps({"api_port": free_port(), "url": "https://ml.example"}))
    paths.admin_token.write_text("admin-secret\n")
    assert main(["deploy", "churn", "--model", "models:/m-1", "--state-dir", str(paths.root)], env={}) == 1
    assert "a deployment belongs to the person who makes it" in one_line_error(capsys)


def test_an_unreachable_platform_is_one_line(capsys):
    env = {"HIMALIA_API_URL": f"http://127.0.0.1:{free_port()}/services/himalia/", "JUPYTERHUB_API_TOKEN": "t"}
    assert main(["deployments"], env=env) == 1
    line = one_line_error(capsys)
    assert line.startswith("himalia: Cannot reach the platform API") and line.endswith("(is himalia up running?)")


# -- commands ----------------------------------------------------------------------------------
def test_deploy_wait_shows_the_state_and_ends_with_the_url(api, capsys):
    ScriptedAPI.script[("POST", "deployments")] = [(202, {"deployment": deployment(), "version": version()})]
    ScriptedAPI.script[("GET", "deployments/churn")] = [(200, deployment(version(2, "starting"))),
                                                        (200, deployment(version(2, "serving", traffic=100)))]
    assert main(["deploy", "churn", "--model", "runs:/r1/model", "--canary", "0", "--replicas", "2",
                 "--wait"], env=api) == 0
    assert ScriptedAPI.seen[0][3] == {"name": "churn", "model_uri": "runs:/r1/model", "canary_percent": 0,
                                      "replicas": 2}
    captured = capsys.readouterr()
    models = api["HIMALIA_API_URL"].replace("services/himalia/", "models/")
    assert captured.out.splitlines() == [
        "churn version 2 (runs:/r1/model): building",
        f"churn version 2 serves 100% of the traffic: POST {models}churn/predict"]
    assert "churn version 2: serving" in captured.err


def test_a_failed_deploy_exits_1_with_its_reason_on_one_line(api, capsys):
    ScriptedAPI.script[("POST", "deployments")] = [(202, {"deployment": deployment(), "version": version()})]
    ScriptedAPI.script[("GET", "deployments/churn")] = [
        (200, deployment(version(2, "failed", reason="bentoml build failed:\nno module 'xgb'")))]
    assert main(["deploy", "churn", "--model", "models:/m-1", "--wait"], env=api) == 1
    assert one_line_error(capsys) == ("himalia: churn version 2 failed: bentoml build failed: no module "
                                      "'xgb' (himalia logs churn --version 2)")


def test_the_platforms_refusal_is_its_message_on_one_line(api, capsys):
    ScriptedAPI.script[("POST", "deployments")] = [
        (422, {"status": 422, "message": "name: 'Churn' must be lowercase letters, digits and '-'"})]
    assert main(["deploy", "Churn", "--model", "models:/m-1"], env=api) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "himalia: name: 'Churn' must be lowercase letters, digits and '-'\n"


def test_promote_rollback_undeploy_and_logs(api, capsys):
    promoted = deployment(version(3, "serving", traffic=100), version(2, "retired"))
    ScriptedAPI.script.update({
        ("POST", "deployments/churn/promote"): [(200, promoted)],
        ("POST", "deployments/churn/rollback"): [(200, deployment(version(2, "serving", traffic=100)))],
        ("DELETE", "deployments/churn"): [(204, "")],
        ("GET", "deployments/churn/logs"): [(200, "build ok\nserving")]})
    assert main(["promote", "churn"], env=api) == 0
    assert capsys.readouterr().out == "churn: traffic v3 100%.\n"
    assert main(["rollback", "churn"], env=api) == 0
    assert capsys.readouterr().out == "churn: traffic v2 100%.\n"
    assert main(["undeploy", "churn"], env=api) == 0
    assert "Undeployed churn" in capsys.readouterr().out
    assert main(["logs", "churn", "--version", "2"], env=api) == 0
    assert capsys.readouterr().out == "build ok\nserving\n"
    assert ScriptedAPI.seen[-1][2] == {"lines": ["200"], "version": ["2"]}


def test_deployments_is_a_table_one_deployment_its_versions_and_json_for_programs(api, capsys):
    churn = deployment(version(3, "serving", traffic=90), version(2, "serving", traffic=10))
    ScriptedAPI.script[("GET", "deployments")] = [(200, {"deployments": [churn]})]
    ScriptedAPI.script[("GET", "deployments/churn")] = [(200, churn)]
    assert main(["deployments"], env=api) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "OWNER", "HEALTH", "TRAFFIC", "URL"]
    assert lines[1].split() == ["churn", "ada", "serving", "v3", "90%,", "v2", "10%", "/models/churn/"]
    assert main(["deployments", "churn"], env=api) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Deployment churn (owner ada, serving; shared with nobody)"
    assert out[1].endswith("/models/churn/predict") and out[3].split()[:3] == ["3", "serving", "90%"]
    assert main(["deployments", "churn", "--json"], env=api) == 0
    assert json.loads(capsys.readouterr().out) == churn
    # `himalia status NAME` is the same view of one deployment.
    ScriptedAPI.script[("GET", "deployments/churn")] = [(200, churn)]
    assert main(["status", "churn"], env=api) == 0
    assert capsys.readouterr().out.splitlines() == out


def test_deploy_keys_are_made_listed_and_revoked(api, capsys):
    ScriptedAPI.script.update({
        ("POST", "deployments/churn/keys"): [(201, {"id": 5, "prefix": "hmk_0123abcd", "label": "ci",
                                                    "created_at": "2026-11-20", "key": "hmk_0123abcd_s3cret"})],
        ("GET", "deployments/churn/keys"): [(200, {"keys": [
            {"id": 5, "prefix": "hmk_0123abcd", "label": "ci", "created_by": "ada",
             "created_at": "2026-11-20", "revoked_at": None, "last_used_at": None}]})],
        ("DELETE", "deployments/churn/keys/5"): [(204, "")]})
    assert main(["deploy-key", "create", "churn", "--label", "ci"], env=api) == 0
    captured = capsys.readouterr()
    assert captured.out == "hmk_0123abcd_s3cret\n" and "shown only now" in captured.err
    assert ScriptedAPI.seen[0][3] == {"label": "ci"}
    assert main(["deploy-key", "list", "churn"], env=api) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["5", "hmk_0123abcd", "ci"]
    assert main(["deploy-key", "revoke", "churn", "5"], env=api) == 0
    assert capsys.readouterr().out == "Revoked key 5 of churn.\n"
