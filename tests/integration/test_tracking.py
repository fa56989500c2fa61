"""Experiment tracking on the real platform: the MLflow server `himalia up` runs as the hub
service ``mlflow``, reached through the proxy at ``/services/mlflow`` with hub tokens.

Runs on SQLite and on PostgreSQL (the hub's database and MLflow's backend store).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from himalia_testing import Kernel, Platform, wait_for

MLFLOW = "/services/mlflow"
API = f"{MLFLOW}/api/2.0/mlflow"
ARTIFACTS = f"{MLFLOW}/api/2.0/mlflow-artifacts/artifacts"
#: Scopes a kernel's token carries for tracking (hubconfig.SERVER_TOKEN_SCOPES, less activity).
TRACKING_SCOPES = ["access:services!service=mlflow", "read:users:name!user",
                   "read:users:groups!user", "read:roles:users!user"]
VIEWER_SCOPES = ["access:services!service=himalia", "read:users:name!user",
                 "read:users:groups!user", "read:roles:users!user"]


class Caller:
    """Somebody calling MLflow's REST API through the proxy with a hub token (or none)."""

    def __init__(self, platform: Platform, token: str | None):
        self.platform = platform
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.platform.url}{path}", headers=self.headers,
                                timeout=60, **kwargs)

    def ok(self, method: str, path: str, **kwargs) -> dict:
        r = self.call(method, path, **kwargs)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else {}


def token_for(platform: Platform, name: str, scopes: list[str]) -> str:
    r = platform.api("POST", f"/users/{name}/tokens", json={"note": "tracking tests", "scopes": scopes})
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture(scope="module")
def people(platform: Platform, unique_name_module):
    """An owner and another scientist with tracking tokens, a viewer, a revoked token."""
    owner, other, viewer, revoked = (unique_name_module(p) for p in ("ow", "ot", "vw", "rv"))
    for name, role in ((owner, "scientist"), (other, "scientist"), (viewer, "viewer"), (revoked, "scientist")):
        assert platform.api("POST", f"/users/{name}").status_code == 201
        platform.set_role(name, role)
    revoked_token = token_for(platform, revoked, TRACKING_SCOPES)
    tokens = platform.api("GET", f"/users/{revoked}/tokens").json()["api_tokens"]
    for t in tokens:
        assert platform.api("DELETE", f"/users/{revoked}/tokens/{t['id']}").status_code == 204
    return {
        "owner": (owner, Caller(platform, token_for(platform, owner, TRACKING_SCOPES))),
        "other scientist": (other, Caller(platform, token_for(platform, other, TRACKING_SCOPES))),
        "viewer": (viewer, Caller(platform, token_for(platform, viewer, VIEWER_SCOPES))),
        "anonymous": (None, Caller(platform, None)),
        "revoked token": (revoked, Caller(platform, revoked_token)),
    }


def own_experiment(caller: Caller, name: str) -> str:
    r = caller.call("GET", f"{API}/experiments/get-by-name", params={"experiment_name": f"users/{name}"})
    if r.status_code == 200:
        return r.json()["experiment"]["experiment_id"]
    return caller.ok("POST", f"{API}/experiments/create", json={"name": f"users/{name}"})["experiment_id"]


def new_run(caller: Caller, experiment_id: str) -> str:
    return caller.ok("POST", f"{API}/runs/create", json={"experiment_id": experiment_id})["run"]["info"]["run_id"]


ACTIONS = ["create", "read", "update", "delete", "artifact upload", "artifact download", "register model"]


def attempt(caller: Caller, action: str, experiment_id: str, run_id: str, model: str) -> int:
    """The HTTP status of ``caller`` doing ``action`` on the owner's experiment, run and model."""
    artifact = f"{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/notes.txt"
    if action == "create":
        r = caller.call("POST", f"{API}/runs/create", json={"experiment_id": experiment_id})
    elif action == "read":
        r = caller.call("GET", f"{API}/runs/get", params={"run_id": run_id})
    elif action == "update":
        r = caller.call("POST", f"{API}/runs/log-metric",
                        json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0})
    elif action == "delete":
        r = caller.call("POST", f"{API}/runs/delete", json={"run_id": run_id})
    elif action == "artifact upload":
        r = caller.call("PUT", artifact.replace("notes.txt", f"upload-{uuid.uuid4().hex[:6]}.txt"),
                        data=b"written")
    elif action == "artifact download":
        r = caller.call("GET", artifact)
    else:
        r = caller.call("POST", f"{API}/model-versions/create",
                        json={"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id})
    return r.status_code


def test_the_tenancy_matrix(platform: Platform, people):
    owner_name, owner = people["owner"]
    experiment_id = own_experiment(owner, owner_name)
    model = f"{owner_name}-model"
    owner.ok("POST", f"{API}/registered-models/create", json={"name": model})
    measured, problems = {}, []
    for who, (_, caller) in people.items():
        for action in ACTIONS:
            # A fresh run of the owner's for each attempt: a delete must not spoil the next.
            run_id = new_run(owner, experiment_id)
            owner.ok("PUT", f"{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/notes.txt", data=b"notes")
            status = attempt(caller, action, experiment_id, run_id, model)
            measured[who, action] = status
            expected = {
                "owner": range(200, 300),
                "other scientist": range(200, 300) if action in ("read", "artifact download") else [403],
                "viewer": [403],
                "anonymous": [401],
                "revoked token": [401],
            }[who]
            if status not in expected:
                problems.append(f"{who} {action}: {status}")
    table = "\n".join(f"{who:16}" + " ".join(f"{measured[who, a]:>5}" for a in ACTIONS) for who in people)
    print(f"\n{' ' * 16}{ACTIONS}\n{table}")
    assert not problems, f"{problems}\n{' ' * 16}{ACTIONS}\n{table}"


def test_a_scientist_made_viewer_loses_tracking_within_seconds(platform: Platform, unique_name):
    name = unique_name("dm")
    assert platform.api("POST", f"/users/{name}").status_code == 201
    platform.set_role(name, "scientist")
    caller = Caller(platform, token_for(platform, name, TRACKING_SCOPES))
    experiment_id = own_experiment(caller, name)
    platform.set_role(name, "viewer")
    wait_for(lambda: caller.call("GET", f"{API}/experiments/get", params={"experiment_id": experiment_id})
             .status_code == 403, timeout=30, what="the demoted scientist to be refused")
    r = caller.call("POST", f"{API}/runs/create", json={"experiment_id": experiment_id})
    assert r.status_code == 403


def test_the_owner_is_recorded_and_others_experiments_stay_read_only(people):
    owner_name, owner = people["owner"]
    other_name, other = people["other scientist"]
    experiment_id = own_experiment(owner, owner_name)
    r = owner.call("GET", f"{MLFLOW}/api/3.0/mlflow/users/current/permissions")
    assert r.status_code == 200, r.text
    grants = [g for g in _grants(r.json()) if g.get("resource_type") == "experiment" and str(g.get("resource_pattern")) == experiment_id]
    assert grants and all(g["permission"] == "MANAGE" for g in grants), r.json()
    r = other.call("POST", f"{API}/experiments/update", json={"experiment_id": experiment_id, "new_name": "mine now"})
    assert r.status_code == 403
    r = other.call("POST", f"{API}/experiments/delete", json={"experiment_id": experiment_id})
    assert r.status_code == 403
    assert owner.ok("GET", f"{API}/experiments/get", params={"experiment_id": experiment_id})[
        "experiment"]["lifecycle_stage"] == "active"


def _grants(document) -> list[dict]:
    """Every object with a ``permission`` in MLflow's permission listing."""
    if isinstance(document, dict):
        found = [document] if "permission" in document else []
        return found + [g for v in document.values() for g in _grants(v)]
    if isinstance(document, list):
        return [g for v in document for g in _grants(v)]
    return []


def test_nobody_takes_another_persons_namespace(people):
    owner_name, _ = people["owner"]
    _, other = people["other scientist"]
    r = other.call("POST", f"{API}/experiments/create", json={"name": f"users/{owner_name}/squat"})
    assert r.status_code == 403
    assert f"users/{owner_name}" not in r.json()["message"] and "belong to their person" in r.json()["message"]


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "..%2F..%2Fsecret.txt", "%2e%2e/%2e%2e/secret.txt",
                                  "/etc/passwd", "%2Fetc%2Fpasswd", "notes.txt%23frag", "a/../../../../b.txt",
                                  "notes.txt%3Fx=..%2F..%2F"])
def test_artifact_paths_that_leave_the_run_are_refused(platform: Platform, people, path):
    owner_name, owner = people["owner"]
    experiment_id = own_experiment(owner, owner_name)
    run_id = new_run(owner, experiment_id)
    root = platform.state_dir / "tracking" / "artifacts"
    before = sorted(p for p in root.parent.rglob("*"))
    url = f"{platform.url}{ARTIFACTS}/{experiment_id}/{run_id}/artifacts/{path}"
    upload = requests.put(url, data=b"escape", headers=owner.headers, timeout=30)
    download = requests.get(url, headers=owner.headers, timeout=30)
    assert upload.status_code >= 400 or _inside(root, platform, experiment_id, run_id)
    assert b"root:" not in download.content
    after = [p for p in root.parent.rglob("*") if p not in before]
    assert all(p.resolve().is_relative_to(root.resolve()) for p in after), after


def _inside(root, platform, experiment_id, run_id) -> bool:
    """An accepted upload landed inside the run's artifact folder (a harmless odd name)."""
    run_root = (root / experiment_id / run_id / "artifacts").resolve()
    return all(p.resolve().is_relative_to(run_root) for p in run_root.rglob("*"))


def test_get_artifact_with_a_path_outside_the_run_is_refused(platform: Platform, people):
    owner_name, owner = people["owner"]
    experiment_id = own_experiment(owner, owner_name)
    run_id = new_run(owner, experiment_id)
    for path in ("../../../../../etc/passwd", "/etc/passwd", "%2e%2e/%2e%2e/etc/passwd"):
        r = owner.call("GET", f"{MLFLOW}/get-artifact", params={"run_uuid": run_id, "path": path})
        assert r.status_code >= 400 and b"root:" not in r.content, (path, r.status_code)


def test_a_kernel_tracks_with_plain_mlflow_and_no_configuration(platform: Platform, unique_name):
    name = unique_name("tk")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    token = platform.user_token(session)["token"]
    with Kernel(server, token) as kernel:
        out = kernel.execute(
            "import mlflow\n"
            "with mlflow.start_run() as run:\n"
            "    mlflow.log_param('alpha', 0.5)\n"
            "    mlflow.log_metric('loss', 0.25)\n"
            "    mlflow.log_text('hello', 'notes/hello.txt')\n"
            "print('RUN', run.info.run_id, mlflow.get_experiment(run.info.experiment_id).name)\n"
        )
    assert out["error"] is None, out
    _, run_id, experiment = next(line for line in out["stdout"].splitlines() if line.startswith("RUN ")).split()
    assert experiment == f"users/{name}"
    caller = Caller(platform, token_for(platform, name, TRACKING_SCOPES))
    run = caller.ok("GET", f"{API}/runs/get", params={"run_id": run_id})["run"]
    assert run["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    assert run["data"]["metrics"][0]["value"] == 0.25
    r = caller.call("GET", f"{ARTIFACTS}/{run['info']['experiment_id']}/{run_id}/artifacts/notes/hello.txt")
    assert r.status_code == 200 and r.content == b"hello"
    # Nothing a kernel could read directly: the artifacts live where only the service can go.
    tracking = platform.state_dir / "tracking"
    assert tracking.stat().st_mode & 0o077 == 0


def test_train_in_a_notebooks_kernel_logs_a_servable_model_with_its_lineage(platform: Platform, unique_name):
    name = unique_name("tr")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    token = platform.user_token(session)["token"]
    with Kernel(server, token, notebook="churn.ipynb") as kernel:
        out = kernel.execute(
            "import numpy as np, pandas as pd\n"
            "rng = np.random.default_rng(0)\n"
            "df = pd.DataFrame({'x1': rng.normal(size=300), 'x2': rng.normal(size=300)})\n"
            "df['churned'] = (df.x1 + df.x2 > 0).astype(int)\n", timeout=120)
        assert out["error"] is None, out
        out = kernel.execute("model = %train sklearn.ensemble.RandomForestClassifier df --target churned "
                             "--name forest\n"
                             "from himalia.sdk import tracking\n"
                             "print('RUN', tracking.last_run_id(), type(model).__name__)", timeout=180)
    assert out["error"] is None, out
    _, run_id, kind = next(line for line in out["stdout"].splitlines() if line.startswith("RUN ")).split()
    assert kind == "RandomForestClassifier"
    caller = Caller(platform, token_for(platform, name, TRACKING_SCOPES))
    run = caller.ok("GET", f"{API}/runs/get", params={"run_id": run_id})["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["himalia.user"] == name and tags["himalia.notebook"] == "churn.ipynb"
    assert len(tags["himalia.cell_sha256"]) == 64 and len(tags["himalia.env_sha256"]) == 64
    assert tags["himalia.model_uri"]
    assert {m["key"] for m in run["data"]["metrics"]} >= {"accuracy", "f1", "roc_auc"}
    listed = caller.ok("GET", f"{API}/artifacts/list", params={"run_id": run_id, "path": "environment"})
    assert [f["path"] for f in listed["files"]] == ["environment/requirements.txt"]


def test_a_browser_logs_in_through_the_hub_and_gets_the_mlflow_ui(platform: Platform, unique_name):
    name = unique_name("br")
    session = platform.login(name, platform.create_user(name))
    page = session.get(f"{platform.url}{MLFLOW}/", headers={"Accept": "text/html"}, timeout=60)
    # Through the hub's OAuth (no confirmation page) and back, with a cookie of MLflow's own.
    assert page.status_code == 200 and "<title>MLflow" in page.text, page.url
    assert page.url == f"{platform.url}{MLFLOW}/"
    cookie = next(c for c in session.cookies if c.name == "service-mlflow")
    assert cookie.path == f"{MLFLOW}/" and cookie.has_nonstandard_attr("HttpOnly")
    r = session.get(f"{platform.url}{MLFLOW}/ajax-api/2.0/mlflow/experiments/search",
                    params={"max_results": 10}, timeout=30)
    assert r.status_code == 200, r.text
    # The same browser with a tampered cookie is anonymous again.
    session.cookies.set("service-mlflow", cookie.value[:-4] + "AAAA", path=f"{MLFLOW}/",
                        domain=cookie.domain)
    r = session.get(f"{platform.url}{MLFLOW}/ajax-api/2.0/mlflow/experiments/search",
                    params={"max_results": 10}, timeout=30)
    assert r.status_code == 401, r.text


def test_a_viewer_is_refused_the_mlflow_ui(platform: Platform, unique_name):
    name = unique_name("vb")
    session = platform.login(name, platform.create_user(name, role="viewer"))
    page = session.get(f"{platform.url}{MLFLOW}/", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 403


def test_points_logged_right_before_the_kernel_shuts_down_are_kept(platform: Platform, unique_name):
    name = unique_name("sd")
    session = platform.login(name, platform.create_user(name))
    server = platform.spawn(session)
    token = platform.user_token(session)["token"]
    kernel = Kernel(server, token)
    out = kernel.execute(
        "import mlflow\n"
        "from himalia.sdk import tracking\n"
        "run = mlflow.start_run()\n"
        "for step in range(5000):\n"
        "    tracking.log_metric('loss', step / 5000, step=step)\n"
        "print('RUN', run.info.run_id)\n")
    assert out["error"] is None, out
    run_id = next(line for line in out["stdout"].splitlines() if line.startswith("RUN ")).split()[1]
    kernel.close()  # shut down at once: the buffer is flushed at exit
    caller = Caller(platform, token_for(platform, name, TRACKING_SCOPES))

    def stored() -> int:
        r = caller.call("GET", f"{MLFLOW}/api/2.0/mlflow/metrics/get-history",
                        params={"run_id": run_id, "metric_key": "loss", "max_results": 10000})
        return len(r.json().get("metrics", [])) if r.status_code == 200 else -1

    wait_for(lambda: stored() == 5000, timeout=60, what="all 5,000 points")
    values = sorted(m["step"] for m in caller.ok(
        "GET", f"{MLFLOW}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss", "max_results": 10000})["metrics"])
    assert values == list(range(5000))


def test_mlflow_runs_no_task_queue_beside_the_hub(platform: Platform):
    # MLflow's GenAI job runner would start task-queue consumers that poll all day and take
    # CPU from the hub on the same machine; the platform runs its jobs itself.
    commands = [" ".join(p.cmdline()) for p in platform.processes() if p.is_running()]
    assert any("mlflow.server" in c or "uvicorn" in c for c in commands), commands
    assert not [c for c in commands if "huey" in c]
