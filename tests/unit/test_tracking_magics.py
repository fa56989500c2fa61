"""%track, %%track and %train in a real IPython shell against a real MLflow store (SQLite in a
temporary folder; the platform's server is exercised in tests/integration/test_tracking.py)."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from mlflow.tracking import MlflowClient

from himalia.magics.tracking import run_link, ui_base
from himalia.sdk import lineage, tracking


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    monkeypatch.setenv("JPY_SESSION_NAME", "projects/churn.ipynb")
    monkeypatch.delenv("HIMALIA_JOB_RUN_ID", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    yield shell
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def run_cell(ip, source: str):
    result = ip.run_cell(source, store_history=True)
    if result.error_in_exec or result.error_before_exec:
        raise result.error_in_exec or result.error_before_exec
    return result.result


def frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "churned": (x1 + 0.5 * x2 + rng.normal(0, .3, rows) > 0).astype(int)})


def test_track_start_and_stop_tag_the_run_with_its_lineage(ip):
    cell = "%track start --name first"
    run_cell(ip, cell)
    run_id = mlflow.active_run().info.run_id
    run_cell(ip, "%track stop")
    run = MlflowClient().get_run(run_id)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert tags["himalia.user"] == "ada" and tags["himalia.notebook"] == "projects/churn.ipynb"
    assert tags["himalia.cell_sha256"] == hashlib.sha256(cell.encode()).hexdigest()
    lock = mlflow.artifacts.load_text(f"runs:/{run_id}/{lineage.LOCK_ARTIFACT}")
    assert tags["himalia.env_sha256"] == hashlib.sha256(lock.encode()).hexdigest()
    assert "mlflow==" in lock.lower() and "himalia.job_run" not in tags
    assert tracking.last_run_id() == run_id


def test_a_job_run_id_is_recorded(ip, monkeypatch):
    monkeypatch.setenv("HIMALIA_JOB_RUN_ID", "job-42")
    run_cell(ip, "%track start")
    run_id = mlflow.active_run().info.run_id
    run_cell(ip, "%track stop")
    assert MlflowClient().get_run(run_id).data.tags["himalia.job_run"] == "job-42"


def test_track_cell_logs_the_named_variables_and_buffered_metrics(ip):
    run_cell(ip, "%%track --name loop --log lr,epochs\n"
                 "from himalia.sdk import tracking\n"
                 "lr, epochs = 0.01, 3\n"
                 "for step in range(500):\n"
                 "    tracking.log_metric('loss', 1 / (step + 1), step=step)\n")
    run_id = tracking.last_run_id()
    run = MlflowClient().get_run(run_id)
    assert run.data.params == {"lr": "0.01", "epochs": "3"} and run.info.status == "FINISHED"
    assert len(MlflowClient().get_metric_history(run_id, "loss")) == 500
    assert mlflow.active_run() is None


def test_a_failing_cell_ends_its_run_failed(ip, capsys):
    result = ip.run_cell("%%track --log missing\nraise ValueError('boom')", store_history=True)
    assert result.error_in_exec is None  # the cell's own error is shown by the nested run
    run = MlflowClient().get_run(tracking.last_run_id())
    assert run.info.status == "FAILED"
    assert "no variable missing" in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ("%track stop", "no active run"),
    ("%track start --log x", "--log is for the cell magic"),
    ("%track frobnicate", "invalid choice"),
])
def test_track_mistakes_are_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("track", line.split(" ", 1)[1])


def test_train_returns_the_fitted_model_and_logs_a_loadable_one(ip):
    ip.user_ns["df"] = frame()
    model = run_cell(ip, "model = %train sklearn.linear_model.LogisticRegression df --target churned\nmodel")
    assert hasattr(model, "predict")
    run_id = tracking.last_run_id()
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["himalia.user"] == "ada" and "himalia.cell_sha256" in run.data.tags
    assert {"accuracy", "f1", "roc_auc"} <= set(run.data.metrics)
    loaded = mlflow.pyfunc.load_model(run.data.tags["himalia.model_uri"])
    X = ip.user_ns["df"].drop(columns="churned")
    assert (loaded.predict(X) == model.predict(X)).all()
    lock = mlflow.artifacts.load_text(f"runs:/{run_id}/{lineage.LOCK_ARTIFACT}")
    assert run.data.tags["himalia.env_sha256"] == hashlib.sha256(lock.encode()).hexdigest()


def test_train_guardrails_are_visible_warnings(ip, capsys):
    df = frame()
    df["leak"] = df["churned"]
    ip.user_ns["df"] = df
    run_cell(ip, "%train sklearn.linear_model.LogisticRegression df --target churned")
    assert "warning:" in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ("sklearn.nothing.Here df --target churned", "No estimator"),
    ("sklearn.linear_model.LogisticRegression df --target nope", "nope"),
    ("sklearn.linear_model.LogisticRegression empty --target churned", "empty"),
    ("sklearn.linear_model.LogisticRegression missing --target churned", "no such variable"),
    ("sklearn.linear_model.LogisticRegression df --target churned --task clustering", "invalid choice"),
    ("sklearn.linear_model.LogisticRegression df", "--target"),
])
def test_train_mistakes_are_usage_errors_saying_what_to_do(ip, line, message):
    ip.user_ns["df"] = frame()
    ip.user_ns["empty"] = frame().iloc[0:0]
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("train", line)


def test_unreachable_mlflow_never_breaks_the_cell(ip, capsys):
    from himalia_testing import free_port

    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}/services/mlflow")
    ip.user_ns["df"] = frame()
    model = run_cell(ip, "%train sklearn.linear_model.LogisticRegression df --target churned")
    assert hasattr(model, "predict")
    run_cell(ip, "%%track\nafter = 1 + 1")
    assert ip.user_ns["after"] == 2
    err = capsys.readouterr().err
    assert "training without logging" in err and "untracked" in err
    with pytest.raises(UsageError, match="unreachable"):
        ip.run_line_magic("track", "start")


def test_help_is_printed_not_run(ip, capsys):
    ip.run_line_magic("train", "--help")
    ip.run_line_magic("track", "-h")
    out = capsys.readouterr().out
    assert "--target" in out and "--log" in out


@pytest.mark.parametrize("session, root, expected", [
    ("/home/ada/projects/churn.ipynb", "/home/ada", "projects/churn.ipynb"),
    ("projects/churn.ipynb", "/home/ada", "projects/churn.ipynb"),
    ("/srv/shared/x.ipynb", "/home/ada", "/srv/shared/x.ipynb"),
    ("", "/home/ada", ""),
])
def test_the_notebook_is_named_as_the_server_names_it(session, root, expected):
    assert lineage.notebook_path({"JPY_SESSION_NAME": session, "HIMALIA_SERVER_ROOT": root}) == expected
    assert lineage.notebook_path({"JPY_SESSION_NAME": session, "HOME": root}) == expected


def test_links_point_at_the_ui_through_the_hub():
    assert ui_base("http://127.0.0.1:8000/services/mlflow") == "/services/mlflow/"
    assert run_link("http://h/services/mlflow", "3", "abc") == "/services/mlflow/#/experiments/3/runs/abc"
    assert run_link("sqlite:///x.db", "3", "abc") == ""
