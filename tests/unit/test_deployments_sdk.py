"""``himalia.sdk.Deployments`` and ``batch_predict`` against a scripted stand-in of the platform
API and of a served model on 127.0.0.1, and over a real MLflow model saved in a temporary store
(the real platform is in the integration tests)."""

from __future__ import annotations

import hashlib
import io

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from himalia.sdk import Client, Deployments, HimaliaError, batch_job, batch_predict
from himalia.sdk.deployments import (DeploymentFailed, batch_job_name, batch_notebook,
                                     deploy_lineage, is_model_uri, models_base_url,
                                     scoring_body)
from himalia_testing import ScriptedAPI, scripted_api

PARQUET = "application/vnd.apache.parquet"


@pytest.fixture
def platform():
    """A client whose API and models URLs point at the stand-in."""
    with scripted_api() as url:
        yield Deployments(Client(f"{url}/services/himalia/", "user-token"))


def version(number: int = 2, state: str = "building", **fields) -> dict:
    return {"version": number, "state": state, "reason": None, "model_uri": "models:/m-1",
            "run_id": "r1", "bento_tag": None, "traffic": 0, "replicas": 1, "created_by": "ada",
            "created_at": "2026-11-20T10:00:00+00:00", "started_at": None, "ended_at": None,
            "lineage": {}, **fields}


def deployment(*versions: dict, **fields) -> dict:
    return {"id": 1, "name": "churn", "owner": "ada", "url": "/models/churn/", "shared_with": [],
            "created_at": "2026-11-20T10:00:00+00:00", "updated_at": "2026-11-20T10:00:00+00:00",
            "health": "pending", "versions": list(versions), **fields}


# -- where things are --------------------------------------------------------------------------
def test_models_are_served_beside_the_api_unless_the_environment_says_otherwise():
    assert models_base_url("http://127.0.0.1:8000/services/himalia/", {}) == "http://127.0.0.1:8000/models/"
    assert models_base_url("https://ml.example/prefix/services/himalia/", {}) == "https://ml.example/prefix/models/"
    assert models_base_url("http://x/services/himalia/", {"HIMALIA_MODELS_URL": "http://m:9/models"}) == "http://m:9/models/"
    with pytest.raises(HimaliaError, match="set HIMALIA_MODELS_URL"):
        models_base_url("http://127.0.0.1:8000/api/", {})


def test_model_uris_are_told_from_deployment_names():
    for uri in ("runs:/abc/model", "models:/m-1", "models:/churn/3", "s3://bucket/model", "file:///tmp/m"):
        assert is_model_uri(uri)
    for name in ("churn", "churn-v2", "runs"):
        assert not is_model_uri(name)


def test_lineage_names_the_notebook_the_cell_and_the_job_run():
    env = {"JPY_SESSION_NAME": "/home/ada/work/churn.ipynb", "HOME": "/home/ada", "HIMALIA_JOB_RUN_ID": "42"}
    assert deploy_lineage("%%deploy churn\n", env) == {
        "notebook": "work/churn.ipynb", "job_run_id": 42,
        "cell_hash": hashlib.sha256(b"%%deploy churn\n").hexdigest()}
    assert deploy_lineage("", {}) == {}


# -- the API -----------------------------------------------------------------------------------
def test_deploy_sends_what_was_given_and_returns_the_accepted_version(platform):
    accepted = {"deployment": deployment(version()), "version": version()}
    ScriptedAPI.script[("POST", "deployments")] = [(202, accepted)]
    answer = platform.deploy("churn", "models:/m-1", canary_percent=10, replicas=2,
                             service_code="class S: ...", lineage={"notebook": "a.ipynb"},
                             shared_with=["bob"])
    assert answer == accepted
    method, path, _, body, auth = ScriptedAPI.seen[0]
    assert (method, path, auth) == ("POST", "deployments", "token user-token")
    assert body == {"name": "churn", "model_uri": "models:/m-1", "canary_percent": 10, "replicas": 2,
                    "service_code": "class S: ...", "lineage": {"notebook": "a.ipynb"},
                    "shared_with": ["bob"]}
    platform.deploy("churn", "runs:/r1/model")
    assert ScriptedAPI.seen[1][3] == {"name": "churn", "model_uri": "runs:/r1/model", "canary_percent": 0,
                                  "replicas": 1}


def test_the_platforms_refusal_is_its_message_and_status(platform):
    ScriptedAPI.script[("POST", "deployments")] = [(422, {"status": 422, "message": "name: must be a DNS label"})]
    with pytest.raises(HimaliaError, match="name: must be a DNS label") as refused:
        platform.deploy("Churn!", "models:/m-1")
    assert refused.value.status == 422


def test_every_route_of_the_contract(platform):
    served = deployment(version(2, "serving", traffic=100))
    ScriptedAPI.script.update({
        ("GET", "deployments"): [(200, {"deployments": [served]})],
        ("GET", "deployments/churn"): [(200, served)],
        ("PATCH", "deployments/churn"): [(200, {**served, "shared_with": ["bob"]})],
        ("POST", "deployments/churn/promote"): [(200, served)],
        ("POST", "deployments/churn/rollback"): [(200, served)],
        ("DELETE", "deployments/churn"): [(204, "")],
        ("POST", "deployments/churn/keys"): [(201, {"id": 5, "prefix": "hmk_0123abcd", "label": "ci",
                                                    "created_at": "x", "key": "hmk_0123abcd_s3cret"})],
        ("GET", "deployments/churn/keys"): [(200, {"keys": [{"id": 5, "prefix": "hmk_0123abcd"}]})],
        ("DELETE", "deployments/churn/keys/5"): [(204, "")],
        ("GET", "deployments/churn/metrics"): [(200, {"buckets": [], "totals": {}})],
        ("GET", "deployments/churn/logs"): [(200, "build ok\nserving\n")],
    })
    assert platform.list(limit=10) == [served]
    assert platform.get("churn") == served
    assert platform.share("churn", ("bob",))["shared_with"] == ["bob"]
    assert platform.promote("churn") == served and platform.rollback("churn") == served
    assert platform.delete("churn") is None
    assert platform.create_key("churn", "ci")["key"] == "hmk_0123abcd_s3cret"
    assert platform.keys("churn") == [{"id": 5, "prefix": "hmk_0123abcd"}]
    assert platform.revoke_key("churn", 5) is None
    assert platform.metrics("churn", minutes=15) == {"buckets": [], "totals": {}}
    assert platform.logs("churn", version=2, lines=50) == "build ok\nserving\n"
    sent = [(m, p, q, b) for m, p, q, b, _ in ScriptedAPI.seen]
    assert sent == [
        ("GET", "deployments", {"offset": ["0"], "limit": ["10"]}, None),
        ("GET", "deployments/churn", {}, None),
        ("PATCH", "deployments/churn", {}, {"shared_with": ["bob"]}),
        ("POST", "deployments/churn/promote", {}, None),
        ("POST", "deployments/churn/rollback", {}, None),
        ("DELETE", "deployments/churn", {}, None),
        ("POST", "deployments/churn/keys", {}, {"label": "ci"}),
        ("GET", "deployments/churn/keys", {}, None),
        ("DELETE", "deployments/churn/keys/5", {}, None),
        ("GET", "deployments/churn/metrics", {"minutes": ["15"]}, None),
        ("GET", "deployments/churn/logs", {"lines": ["50"], "version": ["2"]}, None),
    ]


def test_predictions_as_records_and_as_a_frame_from_parquet(platform):
    from datetime import datetime, timezone

    rows = [{"id": 9, "at": "2026-11-20T10:00:00+00:00", "version": 2, "latency_ms": 3.5,
             "status": 200, "inputs": '{"x": 1}', "outputs": "[0]", "caller": "bob"}]
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer)
    ScriptedAPI.script[("GET", "deployments/churn/predictions")] = [
        (200, {"predictions": rows}), (200, buffer.getvalue())]
    since = datetime(2026, 11, 20, tzinfo=timezone.utc)
    assert platform.predictions("churn", version=2, since=since, limit=5) == rows
    frame = platform.predictions_frame("churn")
    pd.testing.assert_frame_equal(frame, pd.DataFrame(rows))
    assert ScriptedAPI.seen[0][2] == {"version": ["2"], "since": ["2026-11-20T00:00:00+00:00"], "limit": ["5"]}
    assert ScriptedAPI.seen[1][2] == {"limit": ["100"], "format": ["parquet"]}


# -- waiting -----------------------------------------------------------------------------------
def test_wait_follows_the_version_until_it_serves(platform):
    ScriptedAPI.script[("GET", "deployments/churn")] = [
        (200, deployment(version(2, "building"), version(1, "serving", traffic=100))),
        (200, deployment(version(2, "starting"), version(1, "serving", traffic=100))),
        (200, deployment(version(2, "serving", traffic=100), version(1, "retired")))]
    states = []
    done = platform.wait("churn", 2, poll=0.01, on_progress=lambda v: states.append(v["state"]))
    assert done["state"] == "serving" and done["traffic"] == 100
    assert states == ["building", "starting", "serving"]


def test_a_failed_version_raises_with_its_reason(platform):
    ScriptedAPI.script[("GET", "deployments/churn")] = [
        (200, deployment(version(2, "failed", reason="health check: /healthz answered 500")))]
    with pytest.raises(DeploymentFailed, match="churn version 2 failed: health check: /healthz answered 500") as failed:
        platform.wait("churn", 2, poll=0.01)
    assert failed.value.version["state"] == "failed"


def test_waiting_has_a_limit_and_a_missing_version_is_named(platform):
    ScriptedAPI.script[("GET", "deployments/churn")] = [(200, deployment(version(2, "building")))]
    with pytest.raises(HimaliaError, match="churn version 2 is still building after 0s"):
        platform.wait("churn", 2, timeout=0.05, poll=0.01)
    with pytest.raises(HimaliaError, match="churn has no version 7"):
        platform.wait("churn", 7, poll=0.01)


# -- calling the model -------------------------------------------------------------------------
def test_predict_sends_the_frame_split_without_its_index_with_the_hub_token(platform):
    ScriptedAPI.script[("POST", "/models/churn/predict")] = [(200, {"predictions": [1, 0]})]
    frame = pd.DataFrame({"x1": [0.5, -1.0], "plan": ["a", "b"]}, index=[10, 11])
    assert platform.predict("churn", frame) == [1, 0]
    _, _, _, body, auth = ScriptedAPI.seen[0]
    assert body == {"dataframe_split": {"columns": ["x1", "plan"], "data": [[0.5, "a"], [-1.0, "b"]]}}
    assert auth == "token user-token"
    assert platform.url("churn") == platform.client.api_url.replace("services/himalia/", "models/churn/predict")


def test_predict_with_an_api_key_sends_a_scoring_dict_as_it_is(platform):
    ScriptedAPI.script[("POST", "/models/churn/predict")] = [(200, {"predictions": [[0.2, 0.8]]})]
    records = {"dataframe_records": [{"x1": 0.5}]}
    assert platform.predict("churn", records, key="hmk_0123abcd_s3cret") == [[0.2, 0.8]]
    assert ScriptedAPI.seen[0][3] == records and ScriptedAPI.seen[0][4] == "Bearer hmk_0123abcd_s3cret"
    with pytest.raises(TypeError, match="dataframe_split"):
        platform.predict("churn", {"rows": []})
    with pytest.raises(TypeError, match="not list"):
        scoring_body([1, 2])


def test_a_refused_prediction_is_the_routers_message(platform):
    ScriptedAPI.script[("POST", "/models/churn/predict")] = [(401, {"status": 401, "message": "a key or a hub token is needed"})]
    with pytest.raises(HimaliaError, match="a key or a hub token is needed") as refused:
        platform.predict("churn", {"instances": [[1]]}, key="wrong")
    assert refused.value.status == 401


# -- batch_predict -----------------------------------------------------------------------------
def features(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows)})


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory):
    """A scikit-learn model logged to a temporary MLflow store (SQLite and a folder)."""
    from sklearn.linear_model import LinearRegression

    import mlflow.sklearn

    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        experiment = mlflow.create_experiment("batch", artifact_location=(root / "artifacts").as_uri())
        X = features(300)
        fitted = LinearRegression().fit(X, 3 * X.x1 - X.x2)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(fitted, name="model", pip_requirements=["scikit-learn"])
        yield info.model_uri
        mlflow.set_tracking_uri(None)


def test_a_model_uri_scores_locally_and_keeps_the_inputs(model_uri, capsys):
    data = features(250).set_axis(range(1000, 1250))
    scored = batch_predict(model_uri, data, chunk_size=100)
    expected = mlflow.pyfunc.load_model(model_uri).predict(data)
    assert list(scored.columns) == ["x1", "x2", "prediction"]
    pd.testing.assert_frame_equal(scored[["x1", "x2"]], data)
    np.testing.assert_allclose(scored["prediction"].to_numpy(), expected)
    assert "250/250" in capsys.readouterr().err


def test_a_parquet_file_is_scored_into_parquet_chunk_by_chunk(model_uri, tmp_path, capsys):
    data = features(250)
    data.to_parquet(tmp_path / "in.parquet", index=False)
    out = batch_predict(model_uri, tmp_path / "in.parquet", tmp_path / "out.parquet",
                        chunk_size=100, progress=False)
    assert out == tmp_path / "out.parquet"
    written = pq.ParquetFile(out)
    assert written.metadata.num_row_groups == 3 and written.metadata.num_rows == 250
    scored = pd.read_parquet(out)
    np.testing.assert_allclose(scored["prediction"], mlflow.pyfunc.load_model(model_uri).predict(data))
    pd.testing.assert_frame_equal(scored[["x1", "x2"]], data)
    assert capsys.readouterr().err == ""


def test_a_deployment_is_sent_one_chunk_per_request(platform, monkeypatch):
    def doubled(body):
        return {"predictions": [row[0] * 2 for row in body["dataframe_split"]["data"]]}

    ScriptedAPI.script[("POST", "/models/churn/predict")] = [(200, doubled)]
    monkeypatch.setenv("HIMALIA_MODELS_URL", platform.models_url)
    data = features(25)
    scored = batch_predict("churn", data, chunk_size=10, client=platform.client, progress=False)
    np.testing.assert_allclose(scored["prediction"], data.x1 * 2)
    assert [len(s[3]["dataframe_split"]["data"]) for s in ScriptedAPI.seen] == [10, 10, 5]


def test_nothing_to_score_gives_the_columns_and_a_bad_chunk_size_is_refused(model_uri, tmp_path):
    empty = features(0)
    assert list(batch_predict(model_uri, empty, progress=False).columns) == ["x1", "x2", "prediction"]
    empty.to_parquet(tmp_path / "empty.parquet", index=False)
    out = batch_predict(model_uri, tmp_path / "empty.parquet", tmp_path / "out.parquet", progress=False)
    assert list(pd.read_parquet(out).columns) == ["x1", "x2", "prediction"]
    with pytest.raises(ValueError, match="chunk_size"):
        batch_predict(model_uri, empty, chunk_size=0)


# -- batch_job ---------------------------------------------------------------------------------
def scored_job(number: int = 7, **fields) -> dict:
    return {"id": number, "name": "score-churn", "owner": "ada", "version": 1, "schedule": None,
            "timezone": "UTC", "inputs": ["scores/in.parquet"], **fields}


def test_batch_jobs_are_named_after_the_deployment_or_the_model_uri_as_the_platform_allows():
    from himalia.hub.jobs.service import check_name

    uris = {"churn": "score-churn", "models:/churn/3": "score-churn-3",
            "models:/churn@champion": "score-churn-champion",
            "runs:/0123abcd/model": "score-0123abcd-model",
            "s3://bucket/a b/model": "score-bucket-a-b-model"}
    for ref, name in uris.items():
        assert batch_job_name(ref) == name and check_name(name) == name
    long_ones = [batch_job_name("file:///" + "m" * 200 + suffix) for suffix in ("/a", "/b")]
    assert len(set(long_ones)) == 2 and all(len(n) == 100 and check_name(n) for n in long_ones)


def test_the_batch_notebook_takes_typed_parameters_then_scores_and_records():
    from himalia.hub.jobs.service import notebook_parameters, read_notebook

    nb = read_notebook(batch_notebook("churn", "scores/in.parquet", 500, "scored"), max_bytes=10**6)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert notebook_parameters(nb) == {
        "model": {"type": "str", "default": "churn", "help": ""},
        "input_path": {"type": "str", "default": "scores/in.parquet", "help": ""},
        "chunk_size": {"type": "int", "default": 500, "help": ""},
        "record_as": {"type": "str", "default": "scored", "help": ""}}
    code = nb.cells[-1].source
    assert 'batch_predict(model, input_path, output="predictions.parquet", chunk_size=chunk_size)' in code
    assert "record(record_as, scored)" in code and 'record("rows", len(scored))' in code
    assert nb.metadata.kernelspec.language == "python"


def test_the_batch_notebook_scores_its_input_and_records_it_as_a_kernel_would(
        model_uri, tmp_path, monkeypatch):
    import himalia.sdk

    monkeypatch.chdir(tmp_path)  # a run's folder: the input at its path relative to the home
    (tmp_path / "scores").mkdir()
    data = features(120)
    data.to_parquet(tmp_path / "scores" / "in.parquet", index=False)
    recorded = {}
    monkeypatch.setattr(himalia.sdk, "record", lambda name, value: recorded.__setitem__(name, value))
    nb = batch_notebook(model_uri, "scores/in.parquet", chunk_size=50)
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    assert set(recorded) == {"predictions", "rows"} and recorded["rows"] == 120
    np.testing.assert_allclose(recorded["predictions"]["prediction"],
                               mlflow.pyfunc.load_model(model_uri).predict(data))
    assert pq.ParquetFile(tmp_path / "predictions.parquet").metadata.num_row_groups == 3


def test_batch_job_creates_the_job_with_its_input_and_runs_it_now(platform):
    ScriptedAPI.script.update({("POST", "jobs"): [(201, scored_job())],
                           ("POST", "jobs/7/runs"): [(201, {"id": 31, "state": "queued"})]})
    answer = batch_job("churn", "scores/in.parquet", chunk_size=500, client=platform.client)
    assert answer == {"job": scored_job(), "run": {"id": 31, "state": "queued"}}
    (method, path, _, body, auth), run = ScriptedAPI.seen
    assert (method, path, auth) == ("POST", "jobs", "token user-token")
    assert body == {"name": "score-churn", "inputs": ["scores/in.parquet"],
                    "notebook": batch_notebook("churn", "scores/in.parquet", 500)}
    assert run[:2] == ("POST", "jobs/7/runs") and run[3] == {"parameters": {}}


def test_an_existing_job_is_updated_and_a_scheduled_one_is_not_run_now(platform):
    ScriptedAPI.script.update({
        ("POST", "jobs"): [(409, {"status": 409,
                                  "message": "name: you already have a job named 'nightly'"})],
        ("PATCH", "jobs/nightly"): [(200, scored_job(name="nightly", version=2,
                                                     schedule="0 2 * * *"))]})
    answer = batch_job("models:/churn/3", "in.parquet", job="nightly", schedule="0 2 * * *",
                       timezone="Europe/Paris", client=platform.client)
    assert answer == {"job": scored_job(name="nightly", version=2, schedule="0 2 * * *")}
    assert [(m, p) for m, p, *_ in ScriptedAPI.seen] == [("POST", "jobs"), ("PATCH", "jobs/nightly")]
    assert ScriptedAPI.seen[1][3] == {"notebook": batch_notebook("models:/churn/3", "in.parquet"),
                                  "inputs": ["in.parquet"], "schedule": "0 2 * * *",
                                  "timezone": "Europe/Paris"}


def test_batch_job_refuses_bad_arguments_at_once_and_passes_on_the_platforms_refusal(platform):
    for kwargs, words in [({"chunk_size": 0}, "chunk_size"), ({"record_as": "rows"}, "record_as"),
                          ({"record_as": "2 tables"}, "record_as"), ({"job": "bad name!"}, "job"),
                          ({"job": "123"}, "job")]:
        with pytest.raises(ValueError, match=words):
            batch_job("churn", "in.parquet", client=platform.client, **kwargs)
    assert ScriptedAPI.seen == []
    ScriptedAPI.script[("POST", "jobs")] = [(422, {"status": 422, "message": "inputs.0: no such file"})]
    with pytest.raises(HimaliaError, match="inputs.0: no such file") as refused:
        batch_job("churn", "missing.parquet", client=platform.client)
    assert refused.value.status == 422 and len(ScriptedAPI.seen) == 1
