"""The Runs panel's REST routes (``/himalia/tracking/*``) against a real MLflow server.

A plain ``mlflow server`` (SQLite, no auth) and ``jupyter server`` with the himalia extension run
on free ports in their own process groups; the runs are made with ``MlflowClient`` as a kernel
would, tagged with ``himalia.user`` and ``himalia.notebook``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from himalia_testing import JupyterProcess, free_port, jupyter_app, kill_group, wait_for

from himalia.extension.tracking import mlflow_ui_url, tag_clause

NOTEBOOK = "projects/churn/train.ipynb"
QUOTED = "ada's notebook.ipynb"
BOTH_QUOTES = "both'\"quotes\\.ipynb"
# Matches BOTH_QUOTES's LIKE pattern (its quotes and backslash are wildcards), but is another file.
LOOKALIKE = "bothXYquotesZ.ipynb"
LOSS = [0.9, 0.5, 0.25, 0.125, 0.0625]


@dataclass
class MlflowServer:
    url: str
    log: Path


@dataclass
class Runs:
    """The runs the tests look for, by what they are."""

    own_experiment: str = ""
    shared_experiment: str = ""
    notebook: list[str] = field(default_factory=list)  # this notebook's, ada's, newest first
    own_untagged: str = ""
    bobs_same_path: str = ""
    other_notebook: str = ""
    deleted: str = ""
    quoted: str = ""
    both_quotes: str = ""
    lookalike: str = ""
    elsewhere_mine: str = ""


@contextmanager
def mlflow_tracking_server(tmp: Path) -> Iterator[MlflowServer]:
    """A plain MLflow tracking server (SQLite, no auth) on a free port, state in ``tmp``; stopped
    by killing exactly its process group."""
    port = free_port()
    log = tmp / "mlflow.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp}/m.db",
             "--serve-artifacts", "--artifacts-destination", str(tmp / "a")],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=tmp, start_new_session=True,
        )
    server = MlflowServer(url=f"http://127.0.0.1:{port}", log=log)

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return requests.get(f"{server.url}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(healthy, timeout=90, what=f"mlflow server, output in {log}")
        yield server
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)  # reaped, or the group never looks empty
        except subprocess.TimeoutExpired:
            pass
        kill_group(proc.pid, timeout=5)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_tracking_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="module")
def runs(mlflow_server: MlflowServer) -> Runs:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    made = Runs(own_experiment=client.create_experiment("users/ada"),
                shared_experiment=client.create_experiment("churn-shared"))

    def run(experiment: str, notebook: str | None, user: str | None = "ada",
            params: dict | None = None) -> str:
        tags = {"himalia.cell_sha256": "0" * 64}
        if user:
            tags["himalia.user"] = user
        if notebook is not None:
            tags["himalia.notebook"] = notebook
        created = client.create_run(experiment, tags=tags)
        for key, value in (params or {}).items():
            client.log_param(created.info.run_id, key, value)
        client.set_terminated(created.info.run_id)
        return created.info.run_id

    # Oldest first, so lists newest first read bottom-up here.
    first = run(made.own_experiment, NOTEBOOK, params={"lr": "0.1", "depth": "3", "seed": "1"})
    for step, value in enumerate(LOSS):
        client.log_metric(first, "train/loss", value, step=step)
    client.log_metric(first, "accuracy", 0.8)
    client.log_metric(first, "diverged", float("nan"))
    second = run(made.own_experiment, NOTEBOOK, params={"lr": "0.01", "depth": "3", "trees": "100"})
    client.log_metric(second, "accuracy", 0.85)
    made.own_untagged = run(made.own_experiment, None, user=None)
    made.other_notebook = run(made.own_experiment, "projects/other.ipynb")
    made.deleted = run(made.own_experiment, NOTEBOOK)
    client.delete_run(made.deleted)
    made.bobs_same_path = run(made.shared_experiment, NOTEBOOK, user="bob")
    third = run(made.shared_experiment, NOTEBOOK)
    made.quoted = run(made.own_experiment, QUOTED)
    made.both_quotes = run(made.own_experiment, BOTH_QUOTES)
    made.lookalike = run(made.own_experiment, LOOKALIKE)
    made.elsewhere_mine = run(made.shared_experiment, "scratch.ipynb")
    made.notebook = [third, second, first]
    return made


@pytest.fixture(scope="module")
def lab_server(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory,
               runs: Runs) -> Iterator[JupyterProcess]:
    """A user's server as the hub configures it: tracking URI, user and own experiment."""
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "JUPYTERHUB_USER": "ada",
           "MLFLOW_EXPERIMENT_NAME": "users/ada", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with jupyter_server(tmp_path_factory.mktemp("lab"), env) as server:
        yield server


def jupyter_server(tmp: Path, env: dict[str, str], config: str = ""):
    return jupyter_app(tmp, "jupyter_server",
                       'c.ServerApp.jpserver_extensions = {"himalia.extension": True}\n' + config,
                       env)


def get(server: JupyterProcess, route: str, **query: str) -> requests.Response:
    url = f"{server.url}himalia/tracking/{route}"
    if query:
        url += "?" + urlencode(query)
    return requests.get(url, headers={"Authorization": f"token {server.token}"}, timeout=60)


def run_ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [run["run_id"] for run in response.json()["runs"]]


# -- pure functions -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["plain.ipynb", "ada's.ipynb", 'say "hi".ipynb',
                                   "back\\slash.ipynb", "both'\"quotes.ipynb", "ünï cödé.ipynb"])
def test_tag_clause_is_read_back_by_mlflow_as_an_exact_or_a_like_match(value: str) -> None:
    from mlflow.utils.search_utils import SearchUtils

    [parsed] = SearchUtils.parse_search_filter(tag_clause("himalia.notebook", value))

    assert parsed["key"] == "himalia.notebook"
    if parsed["comparator"] == "=":
        assert parsed["value"] == value
    else:
        assert parsed["comparator"] == "LIKE"
        assert len(parsed["value"]) == len(value)
        assert all(p == v or (p == "_" and v in "'\"\\") for p, v in zip(parsed["value"], value))


def test_ui_url_is_the_hub_path_behind_the_proxy_and_the_server_when_standalone() -> None:
    assert mlflow_ui_url("http://127.0.0.1:8000/services/mlflow") == "/services/mlflow/"
    assert mlflow_ui_url("http://127.0.0.1:8000/services/mlflow/") == "/services/mlflow/"
    assert mlflow_ui_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000/"
    assert mlflow_ui_url("http://x/services/mlflow", "https://ml.example.org") == "https://ml.example.org/"


# -- routes ---------------------------------------------------------------------------------------

def test_config_gives_the_mlflow_ui_and_whose_runs_are_mine(lab_server: JupyterProcess,
                                                            mlflow_server: MlflowServer) -> None:
    response = get(lab_server, "config")

    assert response.status_code == 200
    assert response.json() == {
        "ui_url": mlflow_server.url + "/",
        "run_url_template": mlflow_server.url + "/#/experiments/{experiment_id}/runs/{run_id}",
        "user": "ada",
        "experiment": "users/ada",
    }


def test_this_notebook_lists_only_its_runs_by_this_user_newest_first(
    lab_server: JupyterProcess, runs: Runs
) -> None:
    response = get(lab_server, "runs", scope="notebook", notebook=NOTEBOOK)

    assert run_ids(response) == runs.notebook
    body = response.json()
    assert body["scope"] == "notebook" and body["notebook"] == NOTEBOOK
    assert body["next_page_token"] is None
    assert {run["notebook"] for run in body["runs"]} == {NOTEBOOK}
    assert {run["user"] for run in body["runs"]} == {"ada"}


def test_a_run_carries_what_the_panel_shows(lab_server: JupyterProcess, runs: Runs,
                                            mlflow_server: MlflowServer) -> None:
    listed = get(lab_server, "runs", scope="notebook", notebook=NOTEBOOK).json()["runs"]
    first = next(run for run in listed if run["run_id"] == runs.notebook[-1])

    assert first["status"] == "FINISHED"
    assert first["experiment_id"] == runs.own_experiment
    assert first["name"]
    assert isinstance(first["start_time"], int) and first["end_time"] >= first["start_time"]
    assert first["params"] == {"lr": "0.1", "depth": "3", "seed": "1"}
    assert first["metrics"] == {"train/loss": LOSS[-1], "accuracy": 0.8, "diverged": None}
    assert first["tags"] == {"himalia.user": "ada", "himalia.notebook": NOTEBOOK,
                             "himalia.cell_sha256": "0" * 64}
    assert first["url"] == (f"{mlflow_server.url}/#/experiments/{runs.own_experiment}"
                            f"/runs/{first['run_id']}")


@pytest.mark.parametrize("path", [QUOTED, BOTH_QUOTES], ids=["single-quote", "both-quotes"])
def test_a_notebook_path_with_quotes_matches_exactly_that_notebook(
    lab_server: JupyterProcess, runs: Runs, path: str
) -> None:
    expected = runs.quoted if path == QUOTED else runs.both_quotes

    assert run_ids(get(lab_server, "runs", scope="notebook", notebook=path)) == [expected]


def test_mine_is_my_own_experiment_then_my_tagged_runs_elsewhere(
    lab_server: JupyterProcess, runs: Runs
) -> None:
    ids = run_ids(get(lab_server, "runs", scope="mine"))

    own = [runs.lookalike, runs.both_quotes, runs.quoted, runs.other_notebook,
           runs.own_untagged, runs.notebook[1], runs.notebook[2]]
    assert ids == own + [runs.elsewhere_mine, runs.notebook[0]]
    assert runs.bobs_same_path not in ids and runs.deleted not in ids


def test_pages_follow_each_other_without_gaps_or_repeats(lab_server: JupyterProcess) -> None:
    everything = run_ids(get(lab_server, "runs", scope="mine"))
    paged: list[str] = []
    token = ""
    pages = 0
    while True:
        query = {"scope": "mine", "max_results": "2"}
        if token:
            query["page_token"] = token
        response = get(lab_server, "runs", **query)
        page = run_ids(response)
        assert len(page) <= 2
        paged += page
        pages += 1
        token = response.json()["next_page_token"]
        if not token:
            break
        assert pages < 20, "pagination does not end"

    assert paged == everything
    assert pages >= len(everything) // 2


def test_metric_history_is_every_logged_step_exactly(lab_server: JupyterProcess,
                                                     runs: Runs) -> None:
    first = runs.notebook[-1]
    response = get(lab_server, f"runs/{first}/metrics/{quote('train/loss', safe='')}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == first and body["key"] == "train/loss"
    assert [(p["step"], p["value"]) for p in body["history"]] == list(enumerate(LOSS))
    assert all(isinstance(p["timestamp"], int) for p in body["history"])


def test_a_metric_that_is_not_a_number_comes_as_null(lab_server: JupyterProcess,
                                                     runs: Runs) -> None:
    response = get(lab_server, f"runs/{runs.notebook[-1]}/metrics/diverged")

    assert response.status_code == 200, response.text
    assert [p["value"] for p in response.json()["history"]] == [None]


def test_compare_marks_each_param_and_puts_metrics_side_by_side(lab_server: JupyterProcess,
                                                                runs: Runs) -> None:
    first, second = runs.notebook[-1], runs.notebook[-2]
    response = get(lab_server, "compare", a=first, b=second)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["a"]["run_id"] == first and body["b"]["run_id"] == second
    assert body["params"] == [
        {"key": "depth", "a": "3", "b": "3", "diff": "same"},
        {"key": "lr", "a": "0.1", "b": "0.01", "diff": "changed"},
        {"key": "seed", "a": "1", "b": None, "diff": "only-in-a"},
        {"key": "trees", "a": None, "b": "100", "diff": "only-in-b"},
    ]
    assert body["metrics"] == [
        {"key": "accuracy", "a": 0.8, "b": 0.85},
        {"key": "diverged", "a": None, "b": None},
        {"key": "train/loss", "a": LOSS[-1], "b": None},
    ]


@pytest.mark.parametrize("route", ["runs/{unknown}/metrics/accuracy", "runs/{known}/metrics/nope",
                                   "compare?a={known}&b={unknown}"])
def test_an_unknown_run_or_metric_is_404_with_a_message(lab_server: JupyterProcess, runs: Runs,
                                                        route: str) -> None:
    route = route.format(unknown="0" * 32, known=runs.notebook[-1])
    response = requests.get(f"{lab_server.url}himalia/tracking/{route}",
                            headers={"Authorization": f"token {lab_server.token}"}, timeout=60)

    assert response.status_code == 404
    body = response.json()
    assert body["status"] == 404
    assert ("0" * 32 in body["message"]) or ("nope" in body["message"])


@pytest.mark.parametrize("query, field", [
    ({"scope": "everyone"}, "scope"),
    ({"scope": "notebook"}, "notebook"),
    ({"scope": "mine", "max_results": "0"}, "max_results"),
    ({"scope": "mine", "max_results": "many"}, "max_results"),
    ({"scope": "mine", "page_token": "not-ours"}, "page_token"),
])
def test_a_bad_argument_is_400_naming_it(lab_server: JupyterProcess, query: dict,
                                         field: str) -> None:
    response = get(lab_server, "runs", **query)

    assert response.status_code == 400
    assert field in response.json()["message"]


def test_compare_needs_two_runs(lab_server: JupyterProcess, runs: Runs) -> None:
    response = get(lab_server, "compare", a=runs.notebook[0])

    assert response.status_code == 400
    assert response.json() == {"status": 400, "message": "b (a run id) is required."}


ROUTES = ["config", "runs?scope=mine", f"runs/{'0' * 32}/metrics/loss",
          f"compare?a={'0' * 32}&b={'1' * 32}"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["no-token", "wrong-token"])
def test_every_route_refuses_a_request_without_the_servers_token(
    lab_server: JupyterProcess, route: str, token: str | None
) -> None:
    headers = {"Authorization": f"token {token}"} if token else {}
    response = requests.get(f"{lab_server.url}himalia/tracking/{route}", headers=headers,
                            timeout=60, allow_redirects=False)

    assert response.status_code in {401, 403}
    assert "ui_url" not in response.text and "runs" not in response.text


def test_unreachable_mlflow_is_502_saying_so(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/services/mlflow"
    env = {"MLFLOW_TRACKING_URI": down, "JUPYTERHUB_USER": "ada",
           "MLFLOW_EXPERIMENT_NAME": "users/ada", "MLFLOW_TRACKING_TOKEN": "secret-hub-token"}
    with jupyter_server(tmp_path, env) as server:
        responses = [get(server, "runs", scope="mine"),
                     get(server, "runs", scope="notebook", notebook=NOTEBOOK),
                     get(server, f"runs/{'0' * 32}/metrics/loss"),
                     get(server, "compare", a="0" * 32, b="1" * 32)]
        config = get(server, "config")

    for response in responses:
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["status"] == 502
        assert body["message"].startswith(f"MLflow is unreachable at {down}")
        assert "Traceback" not in response.text and "secret-hub-token" not in response.text
    # The link needs no answer from MLflow: the hub serves its UI on JupyterLab's origin.
    assert config.json()["ui_url"] == "/services/mlflow/"


def test_a_server_without_a_tracking_uri_is_503_saying_what_is_missing(tmp_path: Path) -> None:
    with jupyter_server(tmp_path, {"MLFLOW_TRACKING_URI": ""}) as server:
        responses = [get(server, route) for route in ("config", "runs?scope=mine")]

    for response in responses:
        assert response.status_code == 503
        assert "MLFLOW_TRACKING_URI" in response.json()["message"]


def test_the_server_config_overrides_the_environment(tmp_path: Path) -> None:
    config = ('c.RunReader.tracking_uri = "http://127.0.0.1:9/services/mlflow"\n'
              'c.RunReader.ui_url = "https://mlflow.example.org"\n'
              'c.RunReader.user = "grace"\n')
    with jupyter_server(tmp_path, {"MLFLOW_TRACKING_URI": "", "JUPYTERHUB_USER": "ada"},
                        config) as server:
        response = get(server, "config")

    assert response.status_code == 200, response.text
    assert response.json()["ui_url"] == "https://mlflow.example.org/"
    assert response.json()["user"] == "grace"
