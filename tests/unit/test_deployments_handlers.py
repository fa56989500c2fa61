"""The Deployments panel's REST routes (``/himalia/deployments*``) between JupyterLab and the
platform API.

``jupyter server`` with the himalia extension runs on a free port in its own process group; its
platform client is the real ``himalia.sdk.Client``, pointed at the Jobs tests' stand-in of the
platform API on 127.0.0.1, which records each request and answers what the test told it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from himalia_testing import JupyterProcess, free_port, jupyter_app
from unit.test_jobs_handlers import (API, PLATFORM_TOKEN, PlatformStandIn, call,
                                     platform_stand_in, server_config)

VERSION = {"version": 2, "state": "serving", "reason": None, "model_uri": "runs:/abc123/model",
           "run_id": "abc123", "bento_tag": "churn:v2", "traffic": 10, "replicas": 1,
           "created_by": "ada", "created_at": "2030-01-01T10:00:00Z",
           "started_at": "2030-01-01T10:00:05Z", "ended_at": None, "lineage": {}}
DEPLOYMENT = {"id": 4, "name": "churn", "owner": "ada", "url": "/models/churn/",
              "shared_with": [], "created_at": "2030-01-01T09:00:00Z",
              "updated_at": "2030-01-01T10:00:05Z", "health": "serving", "versions": [VERSION]}


@pytest.fixture(scope="module")
def stand_in() -> Iterator[PlatformStandIn]:
    stand_in, server = platform_stand_in()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lab_server(stand_in: PlatformStandIn,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    with jupyter_app(tmp_path_factory.mktemp("lab"), "jupyter_server",
                     server_config(stand_in.url)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_platform(stand_in: PlatformStandIn) -> None:
    stand_in.reset()


# -- deploying ------------------------------------------------------------------------------------

def test_deploy_sends_the_fields_as_given_with_the_servers_token(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("POST", "/deployments", 202, {"deployment": DEPLOYMENT, "version": VERSION})
    fields = {"name": "churn", "model_uri": "runs:/abc123/model", "canary_percent": 10,
              "replicas": 2}

    response = call(lab_server, "POST", "deployments", json=fields)

    assert response.status_code == 202, response.text
    assert response.json() == {"deployment": DEPLOYMENT, "version": VERSION}
    [sent] = stand_in.received
    assert (sent.method, sent.path, sent.body) == ("POST", f"{API}/deployments", fields)
    assert sent.authorization == f"token {PLATFORM_TOKEN}"


def test_deploy_relays_the_platforms_refusal_naming_the_field(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    message = "canary_percent: must be between 0 and 99, got 150"
    stand_in.reply("POST", "/deployments", 422, {"status": 422, "message": message})

    response = call(lab_server, "POST", "deployments",
                    json={"name": "churn", "model_uri": "runs:/abc123/model",
                          "canary_percent": 150})

    assert response.status_code == 422
    assert response.json() == {"status": 422, "message": message}


def test_a_deploy_body_that_is_not_a_json_object_is_a_400(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    response = call(lab_server, "POST", "deployments", data='"churn"')

    assert response.status_code == 400
    assert response.json() == {"status": 400,
                               "message": "The request body must be a JSON object."}
    assert stand_in.received == []


# -- deployments and their versions ---------------------------------------------------------------

@pytest.mark.parametrize("method, route, status", [
    ("GET", "deployments/churn", 200),
    ("POST", "deployments/churn/promote", 200),
    ("POST", "deployments/churn/rollback", 200),
])
def test_deployment_routes_reach_the_platforms_own(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, method: str, route: str, status: int
) -> None:
    stand_in.reply(method, "/" + route, status, DEPLOYMENT)

    response = call(lab_server, method, route)

    assert response.status_code == status, response.text
    assert response.json() == DEPLOYMENT
    [sent] = stand_in.received
    assert (sent.method, sent.path) == (method, f"{API}/{route}")


def test_the_list_is_paged_as_asked(lab_server: JupyterProcess,
                                    stand_in: PlatformStandIn) -> None:
    stand_in.reply("GET", "/deployments", 200, {"deployments": [DEPLOYMENT]})

    listed = call(lab_server, "GET", "deployments", params={"offset": "20", "limit": "10"})
    refused = call(lab_server, "GET", "deployments", params={"limit": "all"})

    assert listed.json() == {"deployments": [DEPLOYMENT]}
    assert refused.status_code == 400
    assert refused.json()["message"] == "limit: must be a whole number."
    [sent] = stand_in.received
    assert sent.query == {"offset": ["20"], "limit": ["10"]}


def test_undeploy_answers_204(lab_server: JupyterProcess, stand_in: PlatformStandIn) -> None:
    stand_in.reply("DELETE", "/deployments/churn", 204, content=b"")

    response = call(lab_server, "DELETE", "deployments/churn")

    assert response.status_code == 204
    assert [(r.method, r.path) for r in stand_in.received] == [
        ("DELETE", f"{API}/deployments/churn")]


def test_nothing_to_promote_is_the_platforms_409(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    message = "churn has no canary to promote: one version takes all the traffic"
    stand_in.reply("POST", "/deployments/churn/promote", 409, {"status": 409, "message": message})

    response = call(lab_server, "POST", "deployments/churn/promote")

    assert response.status_code == 409
    assert response.json() == {"status": 409, "message": message}


def test_a_deployment_that_is_not_yours_is_the_platforms_404(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    response = call(lab_server, "GET", "deployments/someone-elses")

    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": "no such route"}


@pytest.mark.parametrize("name", ["Churn", "9lives", "churn_v2", "-x", "a" * 64])
def test_a_name_that_cannot_be_a_deployments_is_refused_here(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, name: str
) -> None:
    response = call(lab_server, "GET", f"deployments/{name}/metrics")

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"name: {name!r} is not a deployment name")
    assert stand_in.received == []


# -- metrics and logs -----------------------------------------------------------------------------

def test_metrics_pass_the_window_and_answer_the_platforms_buckets(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    metrics = {"buckets": [{"at": "2030-01-01T10:01:00Z", "version": 2, "count": 12, "errors": 0,
                            "p50_ms": 8.5, "p95_ms": 21.0}],
               "totals": {"2": {"count": 12, "errors": 0, "p50_ms": 8.5, "p95_ms": 21.0}}}
    stand_in.reply("GET", "/deployments/churn/metrics", 200, metrics)

    response = call(lab_server, "GET", "deployments/churn/metrics", params={"minutes": "30"})
    refused = call(lab_server, "GET", "deployments/churn/metrics", params={"minutes": "-5"})

    assert response.json() == metrics
    assert refused.status_code == 400 and refused.json()["message"].startswith("minutes:")
    [sent] = stand_in.received
    assert sent.query == {"minutes": ["30"]}


def test_logs_are_plain_text_of_the_version_asked(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    text = b"==> build <==\nimported churn:v2\n==> serve <==\nlistening on :3001\n"
    stand_in.reply("GET", "/deployments/churn/logs", 200, content=text, content_type="text/plain")

    response = call(lab_server, "GET", "deployments/churn/logs",
                    params={"version": "2", "lines": "50"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content == text
    [sent] = stand_in.received
    assert sent.query == {"version": ["2"], "lines": ["50"]}


def test_logs_of_a_version_that_does_not_exist_are_the_platforms_json_404(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    message = "churn has no version 7"
    stand_in.reply("GET", "/deployments/churn/logs", 404, {"status": 404, "message": message})

    response = call(lab_server, "GET", "deployments/churn/logs", params={"version": "7"})

    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": message}


# -- API keys -------------------------------------------------------------------------------------

def test_a_new_key_is_answered_whole_and_listed_by_prefix(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    key = {"id": 5, "prefix": "hmk_1a2b3c4d", "label": "batch scorer",
           "created_at": "2030-01-01T10:00:00Z", "key": "hmk_1a2b3c4d_s3cr3t"}
    listed = {"keys": [{"id": 5, "prefix": "hmk_1a2b3c4d", "label": "batch scorer",
                        "created_by": "ada", "created_at": "2030-01-01T10:00:00Z",
                        "revoked_at": None, "last_used_at": None}]}
    stand_in.reply("POST", "/deployments/churn/keys", 201, key)
    stand_in.reply("GET", "/deployments/churn/keys", 200, listed)

    created = call(lab_server, "POST", "deployments/churn/keys", json={"label": "batch scorer"})
    keys = call(lab_server, "GET", "deployments/churn/keys")

    assert (created.status_code, created.json()) == (201, key)
    assert keys.json() == listed
    assert stand_in.received[0].body == {"label": "batch scorer"}


def test_revoking_a_key_answers_204(lab_server: JupyterProcess, stand_in: PlatformStandIn) -> None:
    stand_in.reply("DELETE", "/deployments/churn/keys/5", 204, content=b"")

    response = call(lab_server, "DELETE", "deployments/churn/keys/5")

    assert response.status_code == 204
    assert [(r.method, r.path) for r in stand_in.received] == [
        ("DELETE", f"{API}/deployments/churn/keys/5")]


# -- authentication and availability --------------------------------------------------------------

@pytest.mark.parametrize("method, route", [
    ("GET", "deployments"), ("POST", "deployments"), ("GET", "deployments/churn"),
    ("DELETE", "deployments/churn"), ("POST", "deployments/churn/promote"),
    ("POST", "deployments/churn/rollback"), ("GET", "deployments/churn/metrics"),
    ("GET", "deployments/churn/logs"), ("GET", "deployments/churn/keys"),
    ("POST", "deployments/churn/keys"), ("DELETE", "deployments/churn/keys/5"),
])
def test_every_route_refuses_a_request_without_the_servers_token(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, method: str, route: str
) -> None:
    response = call(lab_server, method, route, token=None, json={})

    assert response.status_code == 403
    assert stand_in.received == []


def test_an_unreachable_platform_answers_503_without_leaking_the_token(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/services/himalia/"
    with jupyter_app(tmp_path, "jupyter_server", server_config(closed)) as server:
        listed = call(server, "GET", "deployments")
        logs = call(server, "GET", "deployments/churn/logs")

    for response in (listed, logs):
        assert response.status_code == 503
        assert "Cannot reach the platform API" in response.json()["message"]
        assert PLATFORM_TOKEN not in response.text
