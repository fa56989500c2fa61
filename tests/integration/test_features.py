"""The feature store on the real platform: scientists define Feast objects in their kernels
(as their own Unix accounts when the tests run as root), the platform API keeps them in Feast's
SQL registry in its database, kernels build training sets from their Parquet files with DuckDB
and load the SQLite online store through the API; Feast itself, opened on the platform's
registry and online store, is the reference for what was written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from himalia_testing import Kernel, Person, Platform, mlflow_client, wait_for

pytestmark = pytest.mark.timeout(900)
API = "/services/himalia/api/v1"
REFS = ["customer_stats:ltv", "customer_stats:age", "customer_stats:segment"]
CUSTOMERS = 60


@pytest.fixture(scope="module")
def platform(proxy_bin):
    p = Platform(None, proxy_bin)
    p.write_config()
    try:
        p.start(timeout=180)
        yield p
    finally:
        p.close()


class Scientist(Person):
    """A person with a running server, a kernel in it and their files folder."""

    def __init__(self, platform: Platform, name: str, role: str = "scientist"):
        password = platform.create_user(name, role=role)
        session = platform.login(name, password)
        server = platform.spawn(session)
        token = platform.user_token(session)["token"]
        super().__init__(platform, name, token=token)
        self.kernel = Kernel(server, token)
        out = self.run("import os; print(os.path.expanduser('~'))")
        self.home = Path(out.strip().splitlines()[-1])

    def run(self, code: str, timeout: float = 180) -> str:
        out = self.kernel.execute(code, timeout=timeout)
        assert out["error"] is None, f"{out['error']}\n{out['stdout'][-3000:]}"
        return out["stdout"]

    def fails(self, code: str, timeout: float = 180) -> str:
        out = self.kernel.execute(code, timeout=timeout)
        assert out["error"] is not None, f"expected an error from:\n{code}\n{out['stdout'][-2000:]}"
        return out["error"]


@pytest.fixture(scope="module")
def people(platform, unique_name_module):
    alice = Scientist(platform, unique_name_module("fa"))
    bob = Scientist(platform, unique_name_module("fb"))
    viewer = Person(platform, unique_name_module("fv"), "viewer")
    try:
        yield {"alice": alice, "bob": bob, "viewer": viewer}
    finally:
        for p in (alice, bob):
            p.kernel.close()


def feature_rows(seed: int = 0) -> pd.DataFrame:
    """Feature rows with ties on event time (broken by created time) and customers whose
    first value comes late."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    n = 900
    customer = rng.integers(0, CUSTOMERS, n)
    day = rng.integers(0, 40, n)
    # Customers 50+ only have values from day 30 on: labels before that keep nulls.
    day = np.where(customer >= 50, 30 + day % 10, day)
    rows = pd.DataFrame({
        "customer_id": customer.astype("int64"),
        "event_timestamp": start + pd.to_timedelta(day, unit="D"),
        "created": start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.integers(0, 3600, n), unit="s"),
        "lifetime_value": rng.normal(100, 30, n).round(2),
        "age": rng.integers(18, 90, n).astype("int64"),
        "segment": rng.choice(["a", "b", "c"], n),
    })
    return rows


def label_rows(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    start = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame({
        "customer_id": rng.integers(0, CUSTOMERS, n).astype("int64"),
        "event_timestamp": start + pd.to_timedelta(rng.integers(0, 45 * 24, n), unit="h"),
        "churned": rng.integers(0, 2, n).astype("int64"),
    })


def reference(labels: pd.DataFrame, rows: pd.DataFrame, ttl_days: int) -> pd.DataFrame:
    """The point-in-time join by pandas: per label, the latest row at or before its time
    (ties: the latest created), no older than the TTL."""
    rows = rows.rename(columns={"lifetime_value": "ltv"}).sort_values(["event_timestamp", "created"])
    rows = rows.drop_duplicates(["customer_id", "event_timestamp"], keep="last")
    left = labels.reset_index().sort_values("event_timestamp")
    merged = pd.merge_asof(left, rows.drop(columns="created"), on="event_timestamp", by="customer_id",
                           direction="backward", tolerance=pd.Timedelta(days=ttl_days))
    merged = merged.sort_values("index").set_index("index")
    merged.index.name = None
    return merged[["customer_id", "event_timestamp", "churned", "ltv", "age", "segment"]]


DEFINE = '''
from datetime import timedelta
import pandas as pd
from feast import Entity, FeatureView, FileSource, Field
from feast.types import Float64, Int64, String
from himalia.sdk import features

customer = Entity(name="customer", join_keys=["customer_id"], description="A customer")
source = FileSource(name="customer_stats_source", path="{path}", timestamp_field="event_timestamp",
                    created_timestamp_column="created", field_mapping={{"lifetime_value": "ltv"}})
customer_stats = FeatureView(
    name="customer_stats", entities=[customer], ttl=timedelta(days={ttl}), source=source,
    description="Customer value for churn models",
    schema=[Field(name="ltv", dtype=Float64), Field(name="age", dtype=Int64),
            Field(name="segment", dtype=String)],
    tags={{"team": "growth"}})
'''
TTL_DAYS = 20


def write_parquet(who: Scientist, frame: pd.DataFrame, name: str) -> str:
    """Put ``frame`` into ``who``'s files as a Parquet file of theirs."""
    path = who.home / name
    frame.to_parquet(path, index=False)
    home = who.home.stat()
    os.chown(path, home.st_uid, home.st_gid)
    return str(path)


@pytest.fixture(scope="module")
def applied(people):
    alice = people["alice"]
    path = write_parquet(alice, feature_rows(), "customer_stats.parquet")
    alice.run(DEFINE.format(path=path, ttl=TTL_DAYS))
    planned = json.loads(alice.run("import json; print(json.dumps(features.plan([customer, customer_stats])))"))
    applied = json.loads(alice.run("print(json.dumps(features.apply([customer, customer_stats])))"))
    return {"path": path, "plan": planned, "apply": applied}


def test_plan_then_apply_records_the_owner_and_fills_the_catalog(people, applied):
    alice = people["alice"]
    assert [(c["kind"], c["name"], c["action"]) for c in applied["plan"]["changes"]] == [
        ("entity", "customer", "add"), ("feature_view", "customer_stats", "add")]
    assert applied["apply"]["summary"]["add"] == 2
    # Applying the same definitions again changes nothing.
    again = json.loads(alice.run("print(json.dumps(features.plan([customer, customer_stats])))"))
    assert {c["action"] for c in again["changes"]} == {"unchanged"}

    view = alice.ok("GET", "/features/views/customer_stats")
    assert view["owner"] == alice.name
    assert [f["name"] for f in view["features"]] == ["ltv", "age", "segment"]
    assert view["join_keys"] == [{"name": "customer_id", "dtype": "INT64"}]
    assert view["ttl_seconds"] == TTL_DAYS * 86400
    rows = feature_rows()
    assert view["rows"] == len(rows) and view["entity_count"] == rows.customer_id.nunique()
    assert view["freshness"]["latest_event"].startswith(rows.event_timestamp.max().strftime("%Y-%m-%dT%H:%M:%S"))
    ltv = view["statistics"]["ltv"]
    assert ltv["count"] == len(rows) and ltv["nulls"] == 0
    assert ltv["min"] == pytest.approx(rows.lifetime_value.min())
    assert ltv["mean"] == pytest.approx(rows.lifetime_value.mean())
    assert sum(ltv["histogram"]["counts"]) == len(rows)
    assert len(ltv["histogram"]["edges"]) == len(ltv["histogram"]["counts"]) + 1
    assert view["statistics"]["segment"]["distinct"] == 3

    found = alice.ok("GET", "/features", params={"q": "churn"})
    assert [v["name"] for v in found["views"]] == ["customer_stats"]
    assert alice.ok("GET", "/features", params={"q": "nothing-like-this"})["views"] == []
    table = alice.run("print(features.search('growth').to_json(orient='records'))")
    assert json.loads(table)[0]["view"] == "customer_stats"


def test_a_training_set_is_point_in_time_correct_and_logged_to_the_run(platform, people, applied):
    alice = people["alice"]
    labels = label_rows()
    labels_path = write_parquet(alice, labels, "labels.parquet")
    out_path = f"{alice.home}/train.parquet"
    run_id = alice.run(
        "import mlflow\n"
        f"labels = pd.read_parquet({labels_path!r})\n"
        "with mlflow.start_run() as run:\n"
        f"    train = features.training_set(labels, {REFS!r})\n"
        f"train.to_parquet({out_path!r})\n"
        "print(run.info.run_id)").strip().splitlines()[-1]
    train = pd.read_parquet(out_path)
    expected = reference(labels, feature_rows(), TTL_DAYS).reset_index(drop=True)
    assert len(train) == len(labels)
    # Every label row keeps its place, even those with no earlier value (nulls).
    pd.testing.assert_frame_equal(train[["customer_id", "event_timestamp", "churned"]],
                                  labels.reset_index(drop=True))
    assert expected.ltv.isna().sum() > 0
    pd.testing.assert_frame_equal(nulls_as_none(train), nulls_as_none(expected), check_dtype=False)

    with mlflow_client(f"{platform.url}/services/mlflow", token=alice.token):
        import mlflow

        tags = mlflow.get_run(run_id).data.tags
    assert json.loads(tags["himalia.features"]) == REFS
    assert set(json.loads(tags["himalia.feature_views"])) == {"customer_stats"}


def nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """One kind of null (pandas has None, NaN and pd.NA) for comparing values."""
    return frame.astype(object).where(frame.notna(), None)


def feast_store(platform: Platform):
    """Feast itself on the platform's registry and online store (the reference)."""
    import sqlite3

    from feast import FeatureStore, RepoConfig
    from feast.infra.online_stores import sqlite as feast_sqlite

    # Converters are process-wide: an IPython shell made in this worker by an earlier test
    # module registers its own (ISO text) converter for "timestamp" columns, which cannot read
    # the Unix times Feast's SQLite store holds.
    sqlite3.register_converter("timestamp", feast_sqlite.convert_timestamp)
    state = platform.state_dir
    config = RepoConfig(
        project="himalia", provider="local",
        registry={"registry_type": "sql", "path": f"sqlite:///{state}/api/himalia.sqlite",
                  "cache_ttl_seconds": 0},
        online_store={"type": "sqlite", "path": str(state / "features" / "online.db")},
        offline_store={"type": "duckdb"}, entity_key_serialization_version=3)
    return FeatureStore(config=config)


def test_materialize_loads_the_latest_values_that_feast_reads_back(platform, people, applied):
    alice = people["alice"]
    end = pd.Timestamp("2026-02-15", tz="UTC")
    done = json.loads(alice.run(
        f"print(json.dumps(features.materialize(end={end.isoformat()!r}, progress=False)))"))
    assert [(m["view"], m["state"]) for m in done] == [("customer_stats", "succeeded")]
    # The first load covers the view's TTL up to the end, as Feast's materialize_incremental.
    rows = feature_rows()
    window = rows[(rows.event_timestamp > end - pd.Timedelta(days=TTL_DAYS)) & (rows.event_timestamp <= end)]
    assert done[0]["rows"] == window.customer_id.nunique() > 0, done
    latest = window.sort_values(["event_timestamp", "created"]).groupby("customer_id").last()
    keys = [int(latest.index[1]), int(latest.index[0]), 999, int(latest.index[1]), 55]
    online = json.loads(alice.run(
        f"print(features.online({REFS!r}, {{'customer_id': {keys!r}}}).to_json(orient='split'))"))
    feast = feast_store(platform).get_online_features(
        features=REFS, entity_rows=[{"customer_id": k} for k in keys]).to_df()
    got = pd.DataFrame(online["data"], columns=online["columns"])
    assert list(got.customer_id) == keys
    pd.testing.assert_frame_equal(nulls_as_none(got[["ltv", "age", "segment"]]),
                                  nulls_as_none(feast[["ltv", "age", "segment"]]), check_dtype=False)
    assert got.ltv[0] == pytest.approx(latest.lifetime_value[keys[0]])
    assert got.segment[1] == latest.segment[keys[1]]
    assert got.ltv[2] is None or np.isnan(got.ltv[2])
    # The same values through the API, for callers that cannot reach the store.
    via_api = alice.ok("POST", "/features/online", json={"refs": REFS, "entities": {"customer_id": keys}})
    assert [row[0] for row in via_api["data"]] == keys
    assert via_api["data"][0][1] == pytest.approx(latest.lifetime_value[keys[0]])
    assert via_api["data"][2][1:] == [None, None, None]

    # Incremental: the next run starts where this one ended.
    view = alice.ok("GET", "/features/views/customer_stats")
    assert view["freshness"]["materialized_through"].startswith("2026-02-15T00:00:00")
    again = json.loads(alice.run(
        "print(json.dumps(features.materialize(end='2026-03-02T00:00:00+00:00', progress=False)))"))
    assert again[0]["start"].startswith("2026-02-15T00:00:00") and again[0]["rows"] == 0


def test_materialization_runs_as_a_platform_job(people, applied):
    alice = people["alice"]
    made = json.loads(alice.run(
        "print(json.dumps(features.materialize_job(views=['customer_stats'])))"))
    run_id = made["run"]["id"]
    run = json.loads(alice.run(
        "from himalia.sdk import Jobs\n"
        f"print(json.dumps(Jobs().wait({run_id}, timeout=300)))", timeout=360))
    assert run["state"] == "succeeded", run
    history = alice.ok("GET", "/features/materializations", params={"view": "customer_stats"})
    assert history["materializations"][0]["job_run_id"] == str(run_id)
    assert history["materializations"][0]["state"] == "succeeded"


def test_who_may_use_the_feature_store(platform, people, applied):
    alice, bob, viewer = people["alice"], people["bob"], people["viewer"]
    assert requests.get(f"{platform.url}{API}/features", timeout=30).status_code in (401, 403)
    for method, path, body in (("GET", "/features", None), ("POST", "/features/apply", {"objects": []}),
                               ("POST", "/features/specs", {"refs": REFS})):
        r = viewer.call(method, path, json=body)
        assert r.status_code == 403, (path, r.status_code, r.text)
    # Bob may read alice's view but not change or delete it.
    assert bob.ok("GET", "/features/views/customer_stats")["owner"] == alice.name
    path = write_parquet(bob, feature_rows(2), "mine.parquet")
    error = bob.fails(DEFINE.format(path=path, ttl=5) + "features.apply([customer, customer_stats])")
    assert "belongs to" in error and alice.name in error
    r = bob.call("DELETE", "/features/views/customer_stats")
    assert r.status_code == 403 and alice.name in r.json()["message"]
    # A source outside one's own files is refused, naming where files go.
    error = bob.fails(DEFINE.format(path=applied["path"], ttl=5).replace('name="customer_stats"', 'name="bobs_stats"')
                      + "features.apply([customer_stats])")
    assert "outside your files" in error or "cannot be read" in error
    # Nothing half-applied: a new entity and a good view sent with a view the platform refuses
    # (straight to the API, past the SDK's own checks) leave no trace.
    error = bob.fails(
        DEFINE.format(path=path, ttl=5).replace('name="customer_stats"', 'name="bob_view"')
        + "from himalia.sdk.features import _encode, _features\n"
        f"outside = FileSource(name='elsewhere', path={applied['path']!r}, timestamp_field='event_timestamp')\n"
        "bad = FeatureView(name='bob_bad', entities=[customer], source=outside,"
        " schema=[Field(name='age', dtype=Int64), Field(name='customer_id', dtype=Int64)])\n"
        "_features().client.request('POST', 'features/apply', json={'objects': ["
        "_encode(Entity(name='bob_entity', join_keys=['customer_id'])), _encode(customer_stats), _encode(bad)]})")
    assert "outside your files" in error
    catalog = bob.ok("GET", "/features")
    assert "bob_view" not in [v["name"] for v in catalog["views"]]
    assert "bob_entity" not in [e["name"] for e in catalog["entities"]]


def test_bad_input_gets_a_message_that_says_what_to_fix(people, applied):
    alice = people["alice"]
    r = alice.call("POST", "/features/specs", json={"refs": ["customer_stats:ltvv"]})
    assert r.status_code == 404 and "customer_stats:ltv" in r.json()["message"]
    r = alice.call("POST", "/features/specs", json={"refs": ["no colon"]})
    assert r.status_code == 422 and "view:feature" in r.json()["message"]
    naive = feature_rows().assign(event_timestamp=lambda f: f.event_timestamp.dt.tz_localize(None))
    path = write_parquet(alice, naive, "naive.parquet")
    error = alice.fails(DEFINE.format(path=path, ttl=5).replace('name="customer_stats"', 'name="naive_stats"')
                        + "features.apply([customer_stats])")
    assert "event_timestamp" in error and "tz_localize" in error
    error = alice.fails(f"features.training_set(pd.DataFrame({{'event_timestamp': "
                        f"[pd.Timestamp('2026-01-05', tz='UTC')]}}), {REFS!r})")
    assert "customer_id" in error
    r = alice.call("POST", "/features/apply", json={"objects": [{"kind": "on_demand_feature_view",
                                                                "proto": ""}]})
    assert r.status_code == 422 and "pickled" in r.json()["message"]
    r = alice.call("POST", "/features/apply", json={"objects": [{"kind": "entity", "proto": "%%%"}]})
    assert r.status_code == 422 and "base64" in r.json()["message"]


def test_the_features_magic_defines_plans_applies_and_shows(people, applied):
    alice = people["alice"]
    out = alice.kernel.execute(
        "%%features define\n"
        "from feast import Entity, FeatureView, FileSource, Field\n"
        "from feast.types import Int64\n"
        "ages = FeatureView(name='customer_ages', entities=[customer], source=FileSource(\n"
        f"    name='ages_source', path={applied['path']!r}, timestamp_field='event_timestamp'),\n"
        "    schema=[Field(name='age', dtype=Int64)], description='Ages for churn')\n", timeout=120)
    assert out["error"] is None, out
    plan = " ".join(d.get("text/plain", "") for d in out["data"])
    assert "1 to add" in plan and "customer_ages" in plan
    assert "customer_ages" not in [v["name"] for v in alice.ok("GET", "/features")["views"]]
    out = alice.kernel.execute("%features apply", timeout=120)
    assert out["error"] is None and "Applied." in out["stdout"], out
    assert alice.ok("GET", "/features/views/customer_ages")["owner"] == alice.name

    out = alice.kernel.execute("%features describe customer_stats")
    html = out["data"][0]["text/html"]
    assert out["error"] is None and "<svg" in html
    assert html.count("<rect") == 2 * 20  # ltv and age: one bar per bin
    out = alice.kernel.execute("%features describe customer_stat")
    assert "UsageError" in out["stdout"] and "customer_stats" in out["stdout"]
    out = alice.kernel.execute("%features get customer_stats:ltv --key customer_id=999")
    assert out["error"] is None and "customer_id" in out["data"][0]["text/plain"]
    out = alice.kernel.execute("%features get customer_stats:ltv")
    assert "UsageError" in out["stdout"] and "--key" in out["stdout"]
    out = alice.kernel.execute("%features search churn")
    assert out["error"] is None and "customer_ages" in out["data"][0]["text/plain"]


def himalia_features(who: Person, *args: str) -> subprocess.CompletedProcess:
    """``himalia features ARGS`` as in a terminal of ``who``'s server."""
    env = {**os.environ, "HIMALIA_API_URL": f"{who.platform.url}/services/himalia/",
           "JUPYTERHUB_API_TOKEN": who.token}
    return subprocess.run([sys.executable, "-m", "himalia.hub", "features", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_features_command(people, applied, tmp_path):
    alice, viewer = people["alice"], people["viewer"]
    done = himalia_features(alice, "describe", "customer_stats")
    assert done.returncode == 0, done.stderr
    assert "customer_stats (owner" in done.stdout and "ltv" in done.stdout
    done = himalia_features(alice, "search", "growth")
    assert done.returncode == 0 and "customer_stats" in done.stdout
    done = himalia_features(alice, "get", "customer_stats:ltv", "--key", "customer_id=999", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"customer_id": 999, "ltv": None}]
    definitions = tmp_path / "defs.py"
    definitions.write_text(DEFINE.format(path=applied["path"], ttl=TTL_DAYS).replace(
        "description=\"Customer value for churn models\"", "description=\"Customer value, monthly\""))
    done = himalia_features(alice, "plan", str(definitions))
    assert done.returncode == 0, done.stderr
    assert "update" in done.stdout and "description" in done.stdout
    # Errors are one line and a non-zero exit.
    done = himalia_features(alice, "describe", "customer_stat")
    assert done.returncode == 1 and "customer_stats" in done.stderr and "Traceback" not in done.stderr
    done = himalia_features(viewer, "list")
    assert done.returncode == 1 and "scientist" in done.stderr and "Traceback" not in done.stderr


def test_a_deployed_model_gets_its_training_features_filled_in_by_key(platform, people, applied):
    """The refs a deployment declares are checked against its training run's, and the router
    adds their online values to each request's rows, so callers send only the keys."""
    alice = people["alice"]
    numeric = ["customer_stats:ltv", "customer_stats:age"]
    labels_path = write_parquet(alice, label_rows(3), "labels_deploy.parquet")
    model_uri = alice.run(
        "import mlflow, numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from mlflow.models import infer_signature\n"
        f"labels = pd.read_parquet({labels_path!r})\n"
        "with mlflow.start_run():\n"
        f"    train = features.training_set(labels, {numeric!r})\n"
        "    X = train[['ltv', 'age']].fillna(0.0).astype('float64')\n"
        "    model = LogisticRegression().fit(X, train.churned)\n"
        "    info = mlflow.sklearn.log_model(model, name='model', input_example=X.head(3),\n"
        "                                    signature=infer_signature(X, model.predict(X)),\n"
        "                                    pip_requirements=['scikit-learn'])\n"
        "print(info.model_uri)", timeout=300).strip().splitlines()[-1]
    name = f"fill-{alice.name}"[:40]
    r = alice.call("POST", "/deployments", json={"name": name, "model_uri": model_uri,
                                                 "features": ["customer_stats:ltv"]})
    assert r.status_code == 409, r.text
    assert "trained with but not declared: customer_stats:age" in r.json()["message"]
    assert "allow_skew" in r.json()["message"]
    r = alice.call("POST", "/deployments", json={"name": name, "model_uri": model_uri,
                                                 "features": ["customer_stats:nope"]})
    assert r.status_code == 404 and "customer_stats:" in r.json()["message"]
    made = alice.ok("POST", "/deployments", 202, json={"name": name, "model_uri": model_uri,
                                                       "features": numeric})
    assert made["version"]["features"] == numeric

    def serving():
        v = alice.ok("GET", f"/deployments/{name}")["versions"][0]
        assert v["state"] != "failed", v
        return v["state"] == "serving"

    wait_for(serving, 300, interval=1, what=f"{name} to serve")
    # Keys with values online (a no-op when an earlier test loaded them).
    alice.run("features.materialize(end='2026-02-15T00:00:00+00:00', progress=False)")
    rows = feature_rows()
    recent = rows[rows.event_timestamp > pd.Timestamp("2026-01-26", tz="UTC")]
    keys = [int(k) for k in recent.customer_id.unique()[:4]]
    out = alice.run(f"vals = features.online({numeric!r}, {{'customer_id': {keys!r}}})\n"
                    "print('PRED', json.dumps(model.predict(vals[['ltv', 'age']].fillna(0.0)).tolist()))")
    expected = json.loads(next(line for line in out.splitlines() if line.startswith("PRED "))[5:])
    r = requests.post(f"{platform.url}/models/{name}/predict", headers=alice.headers, timeout=60,
                      json={"dataframe_records": [{"customer_id": k} for k in keys]})
    assert r.status_code == 200, (r.text, alice.call("GET", f"/deployments/{name}/logs").text[-3000:])
    assert r.json()["predictions"] == expected
    r = requests.post(f"{platform.url}/models/{name}/predict", headers=alice.headers, timeout=60,
                      json={"dataframe_records": [{"id": 1}]})
    assert r.status_code == 400 and "customer_id" in r.json()["message"]
    alice.ok("DELETE", f"/deployments/{name}", 204)
