"""Model deployments on the real platform: MLflow models logged to the platform's MLflow,
built into bentos and served by real ``bentoml serve`` processes (as the owner's Unix account
when the tests run as root), called through the hub's proxy at ``/models/<name>/``.

Concurrent clients count every failed request while versions are swapped, canaried, rolled
back and broken; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

import himalia_testing
from himalia_testing import Platform, mlflow_client, wait_for

pytestmark = pytest.mark.timeout(1500)
API = "/services/himalia/api/v1"
COLUMNS = ["a", "b"]
ROWS = [[0.9, 0.1], [0.1, 0.9], [0.6, 0.5], [0.3, 0.35]]

RAISES = '''
import os
import mlflow.pyfunc

class Raises(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if os.environ.get("HIMALIA_MODEL_TAG"):  # only once deployed
            raise RuntimeError("this model always fails when served")
        return [0] * len(model_input)

mlflow.models.set_model(Raises())
'''
HANGS = '''
import os
import time
import mlflow.pyfunc

class Hangs(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if os.environ.get("HIMALIA_MODEL_TAG"):  # only once deployed
            time.sleep(600)
        return [0] * len(model_input)

mlflow.models.set_model(Hangs())
'''


@pytest.fixture(scope="module")
def platform(proxy_bin):
    p = Platform(None, proxy_bin)
    p.write_config(deploy_smoke_timeout=8, deploy_start_timeout=120)
    try:
        p.start(timeout=180)
        yield p
    finally:
        p.close()


class Person(himalia_testing.Person):
    def predict(self, name: str, body: dict | None = None, headers: dict | None = None,
                **kwargs) -> requests.Response:
        body = body if body is not None else {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
        return requests.post(f"{self.platform.url}/models/{name}/predict",
                             headers=self.headers if headers is None else headers,
                             json=body, timeout=60, **kwargs)

    def deploy(self, name: str, model_uri: str, **fields) -> dict:
        return self.ok("POST", "/deployments", 202, json={"name": name, "model_uri": model_uri, **fields})

    def wait(self, name: str, version: int, states=("serving", "failed", "retired"),
             timeout: float = 240) -> dict:
        seen = {}

        def settled():
            d = self.ok("GET", f"/deployments/{name}")
            seen.update(next(v for v in d["versions"] if v["version"] == version))
            return seen["state"] in states

        try:
            wait_for(settled, timeout, interval=0.5, what=f"{name} v{version} to settle")
        except AssertionError as e:
            logs = self.call("GET", f"/deployments/{name}/logs", params={"version": version}).text
            raise AssertionError(f"{e}: {seen}\n{logs[-3000:]}") from None
        return seen


@pytest.fixture(scope="module")
def people(platform, unique_name_module):
    return {
        "alice": Person(platform, unique_name_module("da"), "scientist"),
        "bob": Person(platform, unique_name_module("db"), "scientist"),
        "viewer": Person(platform, unique_name_module("dv"), "viewer"),
    }


@pytest.fixture(scope="module")
def mlflow_as_alice(platform, people, tmp_path_factory):
    """The MLflow client in this process, logging to the platform's MLflow as alice, for the
    module only (himalia_testing.mlflow_client puts MLflow's global state back)."""
    import mlflow

    with mlflow_client(f"{platform.url}/services/mlflow", token=people["alice"].token,
                       experiment=f"users/{people['alice'].name}"):
        yield mlflow, tmp_path_factory.mktemp("models")


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.random(n), "b": rng.random(n)})


def log_sklearn(mlflow, flip: bool = False) -> str:
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = frame()
    y = (X.a > X.b).astype(int)
    model = LogisticRegression().fit(X, 1 - y if flip else y)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                 signature=infer_signature(X, model.predict(X)),
                                 pip_requirements=["scikit-learn"])
    return f"runs:/{run.info.run_id}/model"


def log_code_model(mlflow, folder: Path, name: str, code: str) -> str:
    from mlflow.models import infer_signature

    path = folder / f"{name}.py"
    path.write_text(code)
    X = frame(5)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="model", python_model=str(path), input_example=X.head(2),
                                signature=infer_signature(X, np.zeros(len(X), dtype=int)),
                                pip_requirements=["mlflow"])
    return f"runs:/{run.info.run_id}/model"


@pytest.fixture(scope="module")
def models(mlflow_as_alice):
    mlflow, folder = mlflow_as_alice
    return {
        "good": log_sklearn(mlflow),
        "flipped": log_sklearn(mlflow, flip=True),
        "raises": log_code_model(mlflow, folder, "raises", RAISES),
        "hangs": log_code_model(mlflow, folder, "hangs", HANGS),
    }


def own_predictions(model_uri: str) -> list:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    return [int(p) for p in model.predict(pd.DataFrame(ROWS, columns=COLUMNS))]


class Load:
    """Clients calling the endpoint in a loop until stopped: every answer's status and version."""

    def __init__(self, person: Person, name: str, clients: int = 3):
        self.person, self.name = person, name
        self.results: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def run(self) -> None:
        with requests.Session() as s:
            s.headers.update(self.person.headers)
            while not self.stop.is_set():
                try:
                    r = s.post(f"{self.person.platform.url}/models/{self.name}/predict",
                               json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
                               timeout=60)
                    self.results.append((r.status_code, r.headers.get("X-Himalia-Version", "")))
                except requests.RequestException as e:
                    self.results.append((0, type(e).__name__))

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def failures(self) -> list:
        return [r for r in self.results if r[0] != 200]

    def versions(self) -> Counter:
        return Counter(v for s, v in self.results if s == 200)


@pytest.fixture(scope="module")
def churn(people, models, unique_name_module):
    """A deployment serving the good model (version 1)."""
    alice = people["alice"]
    name = unique_name_module("churn").replace("_", "-")
    v = alice.deploy(name, models["good"], lineage={"notebook": "churn.ipynb", "cell_hash": "abc"})
    assert v["version"]["state"] == "building"
    assert alice.wait(name, 1)["state"] == "serving"
    return name


def test_predictions_equal_the_models_own_in_every_scoring_format(people, models, churn):
    alice = people["alice"]
    expected = own_predictions(models["good"])
    bodies = [
        {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in ROWS]},
        {"instances": [dict(zip(COLUMNS, r)) for r in ROWS]},
        {"inputs": {"a": [r[0] for r in ROWS], "b": [r[1] for r in ROWS]}},
    ]
    for body in bodies:
        r = alice.predict(churn, body)
        assert r.status_code == 200, (body, r.text)
        assert r.headers["X-Himalia-Version"] == "1"
        assert r.json() == {"predictions": expected}
    health = requests.get(f"{alice.platform.url}/models/{churn}/healthz", headers=alice.headers, timeout=30)
    assert health.status_code == 200 and health.json()["versions"]["1"]["traffic"] == 100
    d = alice.ok("GET", f"/deployments/{churn}")
    v1 = d["versions"][0]
    assert (d["health"], v1["traffic"], v1["bento_tag"]) == ("serving", 100, f"{churn}:v1")
    assert v1["run_id"] == models["good"].split("/")[1]
    assert v1["lineage"] == {"notebook": "churn.ipynb", "cell_hash": "abc"}


def test_model_servers_run_as_the_owner_never_as_root(platform, people, churn):
    servers = [p for p in platform.processes()
               if "bentoml" in " ".join(p.cmdline()) and "serve" in " ".join(p.cmdline())]
    assert servers, "no bentoml serve process under the platform"
    if os.geteuid() != 0:
        pytest.skip("started without root: everything runs as the test's own account")
    owners = {pwd.getpwuid(p.uids().real).pw_name for p in servers}
    assert owners == {platform.user_prefix + people["alice"].name}


def test_bad_input_gets_a_clear_4xx_and_pickle_is_refused(people, churn):
    alice = people["alice"]
    r = alice.predict(churn, {"rows": ROWS})
    assert r.status_code == 400 and "a (double), b (double)" in r.json()["message"]
    r = alice.predict(churn, {"dataframe_records": [{"x": 1}]})
    assert r.status_code == 400 and "a (double)" in r.json()["message"]
    import pickle

    body = pickle.dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}})
    for content_type in ("application/python-pickle", "application/vnd.bentoml+pickle"):
        r = requests.post(f"{alice.platform.url}/models/{churn}/predict", data=body, timeout=30,
                          headers={**alice.headers, "Content-Type": content_type})
        assert r.status_code == 415 and "unpickled" in r.json()["message"]
    r = requests.post(f"{alice.platform.url}/models/{churn}/predict", data="a,b\n1,2\n", timeout=30,
                      headers={**alice.headers, "Content-Type": "text/csv"})
    assert r.status_code == 415
    # Deploy requests that cannot work are refused before anything is built.
    for body, status, words in [
        ({"name": "Bad_Name", "model_uri": "runs:/x/model"}, 422, "lowercase"),
        ({"name": churn, "model_uri": "file:///etc/passwd"}, 422, "only models in the platform"),
        ({"name": churn, "model_uri": "runs:/0123456789abcdef0123456789abcdef/model"}, 404, "no run"),
        ({"name": churn, "model_uri": "models:/no-such-model/1"}, 404, "no such model"),
        ({"name": churn, "model_uri": "runs:/x/model", "service_code": "def f(:\n"}, 422, "line 1"),
        ({"name": churn, "model_uri": "runs:/x/model", "canary_percent": 100}, 422, "canary_percent"),
        ({"name": churn}, 422, "model_uri"),
    ]:
        r = alice.call("POST", "/deployments", json=body)
        assert r.status_code == status and words in r.json()["message"], (body, r.text)


def test_blue_green_swap_and_canary_under_load_fail_no_request(people, models, churn):
    alice = people["alice"]
    flipped = own_predictions(models["flipped"])
    with Load(alice, churn) as load:
        v2 = alice.deploy(churn, models["flipped"])["version"]["version"]
        assert alice.wait(churn, v2)["state"] == "serving"
        wait_for(lambda: load.versions()[str(v2)] >= 20, 60, what="answers from the new version")
    assert load.failures() == [], load.failures()[:5]
    assert load.versions()["1"] > 0 and load.versions()[str(v2)] > 0
    d = alice.ok("GET", f"/deployments/{churn}")
    states = {v["version"]: (v["state"], v["traffic"]) for v in d["versions"]}
    assert states[1] == ("retired", 0) and states[v2] == ("serving", 100)
    assert alice.predict(churn).json()["predictions"] == flipped

    # A canary: 30% to the new version until promoted.
    with Load(alice, churn) as load:
        v3 = alice.deploy(churn, models["good"], canary_percent=30)["version"]["version"]
        assert alice.wait(churn, v3)["state"] == "serving"
        wait_for(lambda: load.versions()[str(v3)] >= 40, 120, what="canary answers")
        split = {v["version"]: v["traffic"] for v in alice.ok("GET", f"/deployments/{churn}")["versions"]
                 if v["state"] == "serving"}
        assert split == {v2: 70, v3: 30}
        mark = len(load.results)
        wait_for(lambda: len(load.results) > mark + 300, 120, what="300 requests under the canary")
        share = Counter(v for s, v in load.results[mark:] if s == 200)
        fraction = share[str(v3)] / sum(share.values())
        assert 0.15 < fraction < 0.45, share
        alice.ok("POST", f"/deployments/{churn}/promote")
        mark = len(load.results)
        wait_for(lambda: len(load.results) > mark + 50, 60, what="answers after promotion")
        assert set(v for s, v in load.results[mark + 10:]) == {str(v3)}
    assert load.failures() == [], load.failures()[:5]

    # Roll back: the version before is started again and takes all traffic, still with no failure.
    with Load(alice, churn) as load:
        done = alice.ok("POST", f"/deployments/{churn}/rollback")["done"]
        assert f"version {v2}" in done
        assert alice.wait(churn, v2, states=("serving", "failed"))["state"] == "serving"
        wait_for(lambda: load.versions()[str(v2)] >= 20, 60, what="answers after rollback")
    assert load.failures() == [], load.failures()[:5]
    assert alice.predict(churn).json()["predictions"] == flipped


@pytest.mark.parametrize("kind", ["bad service code", "model raises", "model hangs"])
def test_a_broken_version_never_takes_traffic(people, models, churn, kind):
    alice = people["alice"]
    before = alice.predict(churn)
    assert before.status_code == 200
    serving_version = before.headers["X-Himalia-Version"]
    fields = {"model_uri": models["good"]}
    if kind == "bad service code":
        fields["service_code"] = ("def preprocess(frame):\n    return frame\n\n"
                                  "raise RuntimeError('broken on purpose')\n")
    else:
        fields["model_uri"] = models["raises" if kind == "model raises" else "hangs"]
    with Load(alice, churn, clients=2) as load:
        v = alice.deploy(churn, **fields)["version"]["version"]
        failed = alice.wait(churn, v)
    assert failed["state"] == "failed" and failed["traffic"] == 0
    reason = failed["reason"]
    expected = {"bad service code": "broken on purpose", "model raises": "got 500",
                "model hangs": "no answer within 8 s"}[kind]
    assert expected in reason, reason
    assert load.failures() == [] and set(load.versions()) == {serving_version}, load.results[-5:]
    assert alice.predict(churn).headers["X-Himalia-Version"] == serving_version
    logs = alice.call("GET", f"/deployments/{churn}/logs", params={"version": v}).text
    assert "==> build.log <==" in logs


def test_pre_and_post_processing_from_the_cell(people, models, unique_name):
    alice = people["alice"]
    name = unique_name("hooks").replace("_", "-")
    code = ("def preprocess(frame):\n    return frame[['b', 'a']].rename(columns={'b': 'a', 'a': 'b'})\n\n"
            "def postprocess(predictions, frame):\n    return [int(p) * 10 for p in predictions]\n")
    alice.deploy(name, models["good"], service_code=code)
    assert alice.wait(name, 1)["state"] == "serving"
    swapped = [[b, a] for a, b in ROWS]
    import mlflow.pyfunc

    own = mlflow.pyfunc.load_model(models["good"]).predict(pd.DataFrame(swapped, columns=COLUMNS))
    assert alice.predict(name).json() == {"predictions": [int(p) * 10 for p in own]}
    alice.ok("DELETE", f"/deployments/{name}", 204)


def test_a_service_class_from_the_cell(people, models, unique_name):
    alice = people["alice"]
    name = unique_name("klass").replace("_", "-")
    code = '''
import os
import bentoml
import pandas as pd

EXAMPLE = {"rows": [[0.9, 0.1]]}

@bentoml.service
class Scorer:
    model = bentoml.models.BentoModel(os.environ["HIMALIA_MODEL_TAG"])

    def __init__(self):
        self.m = bentoml.mlflow.load_model(self.model)

    @bentoml.api
    def predict(self, rows: list[list[float]]) -> dict:
        return {"labels": [int(p) for p in self.m.predict(pd.DataFrame(rows, columns=["a", "b"]))]}
'''
    v = alice.deploy(name, models["good"], service_code=code)["version"]
    assert v["service"] == "custom"
    assert alice.wait(name, 1)["state"] == "serving"
    r = alice.predict(name, {"rows": ROWS})
    assert r.status_code == 200 and r.json() == {"labels": own_predictions(models["good"])}
    assert r.headers["X-Himalia-Version"] == "1"
    alice.ok("DELETE", f"/deployments/{name}", 204)
    r = alice.predict(name, {"rows": ROWS})
    assert r.status_code == 404


def test_who_may_call_keys_and_sharing(platform, people, models, churn, unique_name):
    alice, bob, viewer = people["alice"], people["bob"], people["viewer"]
    url = f"{platform.url}/models/{churn}/predict"
    body = {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}

    def status(headers: dict) -> int:
        return requests.post(url, json=body, headers=headers, timeout=30).status_code

    assert status(alice.headers) == 200
    assert status({}) == 401
    assert status({"Authorization": "token not-a-token"}) == 401
    assert status(bob.headers) == 404 and status(viewer.headers) == 404
    assert status({"Authorization": f"token {platform.admin_token}"}) == 200
    # Others cannot see or change it through the API either.
    assert bob.call("GET", f"/deployments/{churn}").status_code == 404
    assert bob.call("POST", f"/deployments/{churn}/promote").status_code == 404
    assert viewer.call("POST", "/deployments", json={"name": "v", "model_uri": models["good"]}).status_code == 403
    assert bob.call("POST", "/deployments", json={"name": churn, "model_uri": models["good"]}).status_code == 409

    alice.ok("PATCH", f"/deployments/{churn}", json={"shared_with": [bob.name]})
    assert status(bob.headers) == 200 and status(viewer.headers) == 404
    assert bob.ok("GET", f"/deployments/{churn}")["shared_with"] == [bob.name]
    assert bob.call("POST", f"/deployments/{churn}/rollback").status_code == 403
    assert bob.call("POST", f"/deployments/{churn}/keys", json={"label": "x"}).status_code == 403

    created = alice.ok("POST", f"/deployments/{churn}/keys", 201, json={"label": "batch job"})
    key = created["key"]
    assert key.startswith(created["prefix"]) and created["prefix"].startswith("hmk_")
    assert status({"Authorization": f"Bearer {key}"}) == 200
    assert status({"X-Api-Key": key}) == 200
    listed = alice.ok("GET", f"/deployments/{churn}/keys")["keys"]
    assert [k["prefix"] for k in listed] == [created["prefix"]] and "key" not in listed[0]
    # Another deployment's key does not open this one.
    other = unique_name("other").replace("_", "-")
    alice.deploy(other, models["good"])
    other_key = alice.ok("POST", f"/deployments/{other}/keys", 201, json={"label": "o"})["key"]
    assert status({"X-Api-Key": other_key}) == 403
    alice.ok("DELETE", f"/deployments/{churn}/keys/{created['id']}", 204)
    assert status({"X-Api-Key": key}) == 401
    alice.ok("DELETE", f"/deployments/{other}", 204)
    alice.ok("PATCH", f"/deployments/{churn}", json={"shared_with": []})
    assert status(bob.headers) == 404


def test_prediction_log_is_queryable_and_exports_parquet(people, churn):
    alice = people["alice"]
    marker = [[0.123, 0.456]]
    r = alice.predict(churn, {"dataframe_split": {"columns": COLUMNS, "data": marker}})
    assert r.status_code == 200
    version = int(r.headers["X-Himalia-Version"])

    def logged():
        rows = alice.ok("GET", f"/deployments/{churn}/predictions", params={"limit": 20})["predictions"]
        return next((p for p in rows if "0.123" in p["inputs"]), None)

    wait_for(logged, 30, what="the prediction in the log")
    entry = logged()
    assert entry["version"] == version and entry["status"] == 200 and entry["latency_ms"] > 0
    assert json.loads(entry["outputs"]) == r.json() and entry["caller"] == f"user:{alice.name}"
    raw = alice.call("GET", f"/deployments/{churn}/predictions", params={"format": "parquet", "limit": 1000})
    assert raw.headers["content-type"] == "application/vnd.apache.parquet"
    table = pd.read_parquet(io.BytesIO(raw.content))
    assert {"at", "version", "latency_ms", "status", "inputs", "outputs"} <= set(table.columns)
    assert table["inputs"].str.contains("0.123").any()
    metrics = alice.ok("GET", f"/deployments/{churn}/metrics", params={"minutes": 60})
    assert sum(t["count"] for t in metrics["totals"].values()) >= len(table) > 0


def test_restarting_the_platform_brings_live_deployments_back(platform, people, churn):
    alice = people["alice"]
    before = alice.predict(churn)
    assert before.status_code == 200
    platform.stop()
    platform.start(timeout=180)

    def serving():
        r = alice.predict(churn)
        return r.status_code == 200 and r

    answer = wait_for(serving, 180, interval=0.5, what="the deployment to serve after the restart")
    assert answer.headers["X-Himalia-Version"] == before.headers["X-Himalia-Version"]
    assert answer.json() == before.json()


def test_batch_scoring_as_a_job(platform, people, churn, models):
    """``batch_job`` scores a Parquet file in alice's home as a job run: the run's kernel calls
    the deployment with alice's run token, chunk by chunk, and records what it scored."""
    from datetime import datetime, timezone

    import mlflow.pyfunc

    from himalia.sdk import Client, Jobs, batch_job, latest

    alice = people["alice"]
    # The input goes where the job runner reads alice's files: her Unix account's home (made
    # when her model was first served), owned by her; without root, the platform's own folder.
    if os.geteuid() == 0:
        account = pwd.getpwnam(platform.user_prefix + alice.name)
        home, owner = Path(account.pw_dir), (account.pw_uid, account.pw_gid)
    else:
        home, owner = platform.state_dir / "users" / alice.name, None
    data = frame(300, seed=7)
    (home / "scores").mkdir(parents=True, exist_ok=True)
    data.to_parquet(home / "scores" / "in.parquet", index=False)
    if owner:
        for path in (home / "scores", home / "scores" / "in.parquet"):
            os.chown(path, *owner)
    serving = alice.ok("GET", f"/deployments/{churn}")["versions"]
    model_uri = next(v["model_uri"] for v in serving
                     if v["state"] == "serving" and v["traffic"] == 100)
    client = Client(platform.url + "/services/himalia/", alice.token)
    since = datetime.now(timezone.utc)

    started = batch_job(churn, "scores/in.parquet", chunk_size=120, client=client)
    job = started["job"]
    assert (job["name"], job["inputs"]) == (f"score-{churn}", ["scores/in.parquet"])
    done = Jobs(client).wait(started["run"]["id"], timeout=300)
    assert done["state"] == "succeeded", (done, Jobs(client).logs(done["id"])[-3000:])

    scored = latest(job["name"], "predictions", client=client)
    assert latest(job["name"], "rows", client=client) == 300
    pd.testing.assert_frame_equal(scored[COLUMNS], data)
    own = mlflow.pyfunc.load_model(model_uri).predict(data)
    assert [int(p) for p in scored["prediction"]] == [int(p) for p in own]

    # The deployment logged the run's three requests (120 + 120 + 60 rows) as alice's.
    def logged():
        rows = alice.ok("GET", f"/deployments/{churn}/predictions",
                        params={"since": since.isoformat(), "limit": 100})["predictions"]
        return len(rows) >= 3 and rows

    entries = wait_for(logged, 60, what="the job's requests in the prediction log")
    assert len(entries) == 3
    assert {(e["caller"], e["status"]) for e in entries} == {(f"user:{alice.name}", 200)}
    sent = [row for e in sorted(entries, key=lambda e: e["at"])
            for row in json.loads(e["inputs"])["dataframe_split"]["data"]]
    np.testing.assert_allclose(sent, data.to_numpy(), rtol=0, atol=1e-14)


def test_train_then_deploy_from_a_notebook(people, mlflow_as_alice, unique_name):
    """%train logs a model in a cell; the next, `%deploy NAME` (the cell magic's line form),
    serves that model: its answers are the model's own."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from himalia.sdk import Client

    alice = people["alice"]
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    shell.magics_manager.registry["DeployMagics"].client_factory = lambda: Client(
        f"{alice.platform.url}/services/himalia/", alice.token)
    data = frame(300, seed=3)
    shell.user_ns["df"] = data.assign(y=(data.a > 0.5 * data.b).astype(int))
    trained = shell.run_cell("model = %train sklearn.linear_model.LogisticRegression df --target y")
    assert trained.success, trained.error_in_exec
    name = unique_name("cell").replace("_", "-")
    with capture_output() as shown:
        shell.run_line_magic("deploy", name)
    said = shown.stdout + "".join(o.data.get("text/plain", "") for o in shown.outputs)
    assert f"/models/{name}/predict" in said and "serves" in said, said
    version = alice.ok("GET", f"/deployments/{name}")["versions"][0]
    assert version["state"] == "serving" and version["model_uri"].startswith(("runs:/", "models:/"))
    assert version["lineage"].get("cell_hash")
    assert alice.predict(name).json() == {"predictions": own_predictions(version["model_uri"])}
    alice.ok("DELETE", f"/deployments/{name}", 204)
