"""%%deploy and %deployments in a real IPython shell, the platform API swapped for a scripted
client through configuration, and %train's model in a real MLflow store (SQLite in a temporary
folder)."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mlflow.tracking import MlflowClient

from himalia.magics.base import himalia_magics
from himalia.sdk import HimaliaError, tracking


class ScriptedClient:
    """Answers ``request(method, path)`` from ``script`` (replies in turn, the last repeating;
    an exception is raised) and records ``(method, path, json)``."""

    api_url = "http://hub.example/services/himalia/"
    _headers = {"Authorization": "token t"}

    def __init__(self, script: dict):
        self.script, self.seen = script, []

    def request(self, method: str, path: str, **kwargs):
        self.seen.append((method, path, kwargs.get("json")))
        replies = self.script[(method, path)]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def version(number: int = 2, state: str = "building", **fields) -> dict:
    return {"version": number, "state": state, "reason": None, "model_uri": "models:/m-1",
            "traffic": 0, "replicas": 1, "created_by": "ada", "created_at": "2026-11-20T10:00:00+00:00",
            **fields}


def deployment(*versions: dict, **fields) -> dict:
    return {"id": 1, "name": "churn", "owner": "ada", "url": "/models/churn/", "shared_with": [],
            "health": "serving", "versions": list(versions), **fields}


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("JPY_SESSION_NAME", "projects/churn.ipynb")
    monkeypatch.delenv("HIMALIA_JOB_RUN_ID", raising=False)
    monkeypatch.delenv("HIMALIA_MODELS_URL", raising=False)
    monkeypatch.setattr(tracking, "_LAST_RUN_ID", None)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    magics = shell.magics_manager.registry["DeployMagics"]
    monkeypatch.setattr(magics, "poll_interval", 0.0)
    monkeypatch.setattr(magics, "client_factory", lambda: pytest.fail("the platform must not be called"))
    yield shell
    mlflow.set_tracking_uri(None)


def platform(ip, script: dict) -> ScriptedClient:
    client = ScriptedClient(script)
    ip.magics_manager.registry["DeployMagics"].client_factory = lambda: client
    return client


def run_cell(ip, source: str):
    result = ip.run_cell(source, store_history=True)
    if result.error_in_exec or result.error_before_exec:
        raise result.error_in_exec or result.error_before_exec
    return result.result


# -- arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("magic", ["deploy", "deployments"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_needs_no_platform(ip, capsys, magic, flag):
    ip.run_line_magic(magic, flag)
    out = capsys.readouterr().out
    assert f"%{magic}" in out
    if magic == "deploy":
        assert "--canary PCT" in out and "--no-wait" in out and "last %train" in out


def test_cell_magic_help_needs_no_platform(ip, capsys):
    ip.run_cell_magic("deploy", "--help", "class Service: ...")
    assert "--model URI" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("", "the following arguments are required: name"),
    ("churn --canary half", "argument --canary: invalid int value: 'half'"),
    ("churn --replicas", "argument --replicas: expected one argument"),
    ("churn --colour red", "unrecognized arguments: --colour red"),
])
def test_argument_mistakes_point_to_help(ip, line, message):
    with pytest.raises(UsageError, match=rf"^%deploy: {message} \(see %deploy --help\)$"):
        ip.run_line_magic("deploy", line)


def test_deployments_takes_one_name_at_most(ip):
    with pytest.raises(UsageError, match=r"unrecognized arguments: b \(see %deployments --help\)"):
        ip.run_line_magic("deployments", "a b")


# -- which model -------------------------------------------------------------------------------
def test_without_model_or_training_it_asks_for_one(ip):
    with pytest.raises(UsageError, match=r"^%%deploy: which model\? Pass --model URI .* or run %train first$"):
        ip.run_cell_magic("deploy", "churn", "\n")


def test_a_last_run_without_a_model_is_named(ip):
    run_cell(ip, "%track start\n")
    run_cell(ip, "%track stop\n")
    with pytest.raises(UsageError, match=rf"the last run \({tracking.last_run_id()}\) logged no model"):
        ip.run_line_magic("deploy", "churn")


def test_the_model_defaults_to_the_last_train_with_the_cells_lineage(ip, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    ip.user_ns["df"] = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})
    run_cell(ip, "%train sklearn.linear_model.LogisticRegression df --target y")
    model_uri = MlflowClient().get_run(tracking.last_run_id()).data.tags["himalia.model_uri"]
    client = platform(ip, {("POST", "deployments"): [{"deployment": deployment(), "version": version()}]})
    cell = "%deploy churn --no-wait --replicas 2"
    run_cell(ip, cell)
    assert client.seen == [("POST", "deployments", {
        "name": "churn", "model_uri": model_uri, "canary_percent": 0, "replicas": 2,
        "lineage": {"notebook": "projects/churn.ipynb",
                    "cell_hash": hashlib.sha256(cell.encode()).hexdigest()}})]
    out = capsys.readouterr().out
    assert f"churn version 2 ({model_uri}): building" in out and "%deployments churn" in out


# -- deploying ---------------------------------------------------------------------------------
def test_the_cell_is_the_service_and_the_states_are_shown_until_it_serves(ip, capsys):
    client = platform(ip, {
        ("POST", "deployments"): [{"deployment": deployment(), "version": version()}],
        ("GET", "deployments/churn"): [deployment(version(2, "building")), deployment(version(2, "building")),
                                       deployment(version(2, "starting")),
                                       deployment(version(2, "serving", traffic=10))]})
    body = "import bentoml\nclass Churn: ...\n"
    ip.run_cell_magic("deploy", "churn --model runs:/r1/model --canary 10", body)
    assert client.seen[0][2]["service_code"] == body.strip()
    assert client.seen[0][2]["canary_percent"] == 10
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["churn version 2 (runs:/r1/model): building", "churn version 2: starting",
                     "churn version 2: serving",
                     "churn version 2 serves 10% of the traffic beside the current version: "
                     "promote it with himalia promote churn.",
                     "POST http://hub.example/models/churn/predict"]


def test_a_blank_cell_deploys_the_generic_service(ip):
    client = platform(ip, {("POST", "deployments"): [{"deployment": deployment(), "version": version()}]})
    ip.run_cell_magic("deploy", "churn --model models:/m-1 --no-wait", "  \n\n")
    assert "service_code" not in client.seen[0][2]


def test_a_failed_version_is_a_usage_error_with_its_reason(ip):
    platform(ip, {("POST", "deployments"): [{"deployment": deployment(), "version": version()}],
                  ("GET", "deployments/churn"): [deployment(version(2, "failed",
                                                                    reason="import error: no module 'xgb'"))]})
    with pytest.raises(UsageError, match=r"^%deploy: churn version 2 failed: import error: no module 'xgb' "
                                         r"\(the logs: .*himalia logs churn --version 2\)$"):
        ip.run_line_magic("deploy", "churn --model models:/m-1")


def test_the_platforms_refusal_is_its_own_message(ip):
    refusal = HimaliaError("/services/himalia/api/v1/deployments: canary_percent: must be 0..99", 422)
    platform(ip, {("POST", "deployments"): [refusal]})
    with pytest.raises(UsageError, match=r"^%%deploy: canary_percent: must be 0\.\.99$"):
        ip.run_cell_magic("deploy", "churn --model models:/m-1 --canary 150", "\n")


# -- %deployments ------------------------------------------------------------------------------
def test_deployments_lists_versions_with_state_and_traffic(ip, capsys):
    listed = [deployment(version(3, "serving", traffic=90), version(2, "serving", traffic=10),
                         version(1, "retired")),
              deployment(version(1, "failed", reason="bad"), name="fraud", url="/models/fraud/",
                         health="down")]
    client = platform(ip, {("GET", "deployments"): [{"deployments": listed}]})
    ip.run_line_magic("deployments", "")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 deployments"
    assert lines[1].split() == ["NAME", "HEALTH", "VERSIONS", "OWNER", "URL"]
    assert "v3 serving 90%, v2 serving 10%" in lines[2] and "v1" not in lines[2]
    assert lines[3].startswith("fraud") and "v1 failed 0%" in lines[3]
    assert client.seen[0][:2] == ("GET", "deployments")


def test_deployments_name_shows_every_version(ip, capsys):
    platform(ip, {("GET", "deployments/churn"): [deployment(
        version(2, "failed", reason="health\ncheck failed"), version(1, "serving", traffic=100),
        shared_with=["bob"])]})
    ip.run_line_magic("deployments", "churn")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("churn (serving, owner ada, shared with bob): "
                      "POST http://hub.example/models/churn/predict")
    assert out[2].split()[:3] == ["2", "failed", "0%"] and out[2].endswith("health check failed")
    assert out[3].split()[:3] == ["1", "serving", "100%"]


def test_no_deployments_says_how_to_make_one(ip, capsys):
    platform(ip, {("GET", "deployments"): [{"deployments": []}]})
    ip.run_line_magic("deployments", "")
    assert "%%deploy NAME" in capsys.readouterr().out


def test_an_unknown_deployment_is_a_usage_error(ip):
    platform(ip, {("GET", "deployments/nope"): [HimaliaError("/x: no deployment 'nope'", 404)]})
    with pytest.raises(UsageError, match=r"^%deployments: no deployment 'nope'$"):
        ip.run_line_magic("deployments", "nope")


def test_himalia_lists_the_new_magics(ip):
    listed = dict(himalia_magics(ip))
    assert "%%deploy" in listed and "%deploy" in listed and "%deployments" in listed
