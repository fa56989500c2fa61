"""The Features panel's REST routes (``/himalia/features*``) between JupyterLab and the platform
API.

``jupyter server`` with the himalia extension runs on a free port in its own process group (the
Deployments tests' fixtures); its platform client is the real ``himalia.sdk.Client``, pointed at
the Jobs tests' stand-in of the platform API on 127.0.0.1, which records each request and
answers what the test told it to.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from himalia_testing import JupyterProcess, free_port, jupyter_app
from unit.test_deployments_handlers import (  # noqa: F401 - the fixtures are used
    fresh_platform, lab_server, stand_in)
from unit.test_jobs_handlers import API, PLATFORM_TOKEN, PlatformStandIn, call, server_config

VIEW = {"name": "customer_stats", "owner": "ada", "description": "Customer value for churn",
        "tags": {"team": "growth"}, "entities": ["customer"],
        "join_keys": [{"name": "customer_id", "dtype": "INT64"}],
        "features": [{"name": "ltv", "dtype": "DOUBLE", "description": ""}],
        "ttl_seconds": 86400.0, "online": True,
        "source": {"path": "/home/ada/stats.parquet", "timestamp_field": "event_timestamp",
                   "created_timestamp_column": "", "field_mapping": {}},
        "created_at": "2030-01-01T09:00:00+00:00", "updated_at": "2030-01-01T09:00:00+00:00",
        "rows": 900, "entity_count": 60,
        "freshness": {"latest_event": "2030-01-01T00:00:00+00:00",
                      "materialized_through": None, "last_materialization": None},
        "hash": "0123456789abcdef"}
CATALOG = {"views": [VIEW], "entities": [{"name": "customer", "join_keys": ["customer_id"],
                                          "value_type": "INT64", "description": "A customer",
                                          "owner": "ada", "tags": {}}],
           "registry_version": "2030-01-01 09:00:00"}
DETAIL = {**VIEW, "statistics": {"ltv": {"count": 900, "nulls": 0, "distinct": 850, "mean": 100.0,
                                         "std": 30.0, "min": 1.0, "max": 190.0,
                                         "histogram": {"edges": [1.0, 95.5, 190.0],
                                                       "counts": [420, 480]}}},
          "statistics_at": "2030-01-01T09:00:00+00:00", "materializations": [], "versions": []}
VIEWER_REFUSAL = "This needs the platform role admin or scientist; 'vic' has viewer."


def test_the_catalog_is_the_platforms_asked_with_the_servers_token(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("GET", "/features", 200, CATALOG)

    response = call(lab_server, "GET", "features")

    assert response.status_code == 200, response.text
    assert response.json() == CATALOG
    [sent] = stand_in.received
    assert (sent.method, sent.path, sent.query) == ("GET", f"{API}/features", {})
    assert sent.authorization == f"token {PLATFORM_TOKEN}"


def test_search_words_are_passed_on_as_typed(lab_server: JupyterProcess,
                                             stand_in: PlatformStandIn) -> None:
    stand_in.reply("GET", "/features", 200, {**CATALOG, "views": []})

    response = call(lab_server, "GET", "features", params={"q": "  churn growth "})

    assert response.json()["views"] == []
    [sent] = stand_in.received
    assert sent.query == {"q": ["churn growth"]}


def test_a_view_comes_with_its_statistics(lab_server: JupyterProcess,
                                          stand_in: PlatformStandIn) -> None:
    stand_in.reply("GET", "/features/views/customer_stats", 200, DETAIL)

    response = call(lab_server, "GET", "features/views/customer_stats")

    assert response.status_code == 200, response.text
    assert response.json() == DETAIL
    assert [(r.method, r.path) for r in stand_in.received] == [
        ("GET", f"{API}/features/views/customer_stats")]


def test_a_viewer_gets_the_platforms_refusal_as_is(lab_server: JupyterProcess,
                                                   stand_in: PlatformStandIn) -> None:
    stand_in.reply("GET", "/features", 403, {"status": 403, "message": VIEWER_REFUSAL})

    response = call(lab_server, "GET", "features")

    assert response.status_code == 403
    assert response.json() == {"status": 403, "message": VIEWER_REFUSAL}


def test_an_unknown_view_is_the_platforms_404_naming_close_matches(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    message = "No feature view 'customer_stat'; did you mean 'customer_stats'?"
    stand_in.reply("GET", "/features/views/customer_stat", 404, {"status": 404, "message": message})

    response = call(lab_server, "GET", "features/views/customer_stat")

    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": message}


@pytest.mark.parametrize("name", ["9lives", "customer-stats", "a b", "x" * 129])
def test_a_name_that_cannot_be_a_views_is_refused_here(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, name: str
) -> None:
    response = call(lab_server, "GET", f"features/views/{name}")

    assert response.status_code == 400
    assert response.json()["message"].startswith(f"name: {name!r} is not a feature view name")
    assert stand_in.received == []


@pytest.mark.parametrize("route", ["features", "features/views/customer_stats"])
def test_every_route_refuses_a_request_without_the_servers_token(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, route: str
) -> None:
    response = call(lab_server, "GET", route, token=None)

    assert response.status_code == 403
    assert stand_in.received == []


def test_an_unreachable_platform_answers_503_without_leaking_the_token(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/services/himalia/"
    with jupyter_app(tmp_path, "jupyter_server", server_config(closed)) as server:
        response = call(server, "GET", "features")

    assert response.status_code == 503
    assert "Cannot reach the platform API" in response.json()["message"]
    assert PLATFORM_TOKEN not in response.text
