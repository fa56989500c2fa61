"""The labels pass-through (``/himalia/labels/api/<path>``) between JupyterLab (the Labels panel,
the labeling widget) and the platform API's ``/api/v1/labelsets/<path>``.

``jupyter server`` with the himalia extension runs on a free port in its own process group (the
Deployments tests' fixtures); its platform client is the real ``himalia.sdk.Client``, pointed at
the Jobs tests' stand-in of the platform API on 127.0.0.1, which records each request and
answers what the test told it to.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from himalia_testing import JupyterProcess, free_port, jupyter_app
from unit.test_deployments_handlers import (  # noqa: F401 - the fixtures are used
    fresh_platform, lab_server, stand_in)
from unit.test_jobs_handlers import API, PLATFORM_TOKEN, PlatformStandIn, call, server_config

LABELSET = {"id": 7, "name": "reviews", "owner": "ada", "task": "single",
            "classes": ["pos", "neg"], "instructions": "", "k": 2, "shared_users": ["bob"],
            "shared_groups": [], "strategy": "", "model": "", "created_at": "2030-01-01T09:00:00Z",
            "progress": {"items": 3, "done": 1, "labels": 2, "annotators": {"ada": 1, "bob": 1},
                         "mine": 1, "remaining_for_me": 2}}
#: The first bytes of a PNG file and a few more.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def labels(server: JupyterProcess, method: str, path: str, **kwargs) -> requests.Response:
    return call(server, method, f"labels/api/{path}", **kwargs)


def test_the_label_sets_are_the_platforms_asked_with_the_servers_token(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("GET", "/labelsets", 200, {"labelsets": [LABELSET]})

    response = labels(lab_server, "GET", "")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"labelsets": [LABELSET]}
    [sent] = stand_in.received
    assert (sent.method, sent.path) == ("GET", f"{API}/labelsets")
    assert sent.authorization == f"token {PLATFORM_TOKEN}"


def test_the_query_is_passed_on_without_the_servers_own_arguments(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("GET", "/labelsets/7/items", 200, {"items": [], "total": 3})

    response = labels(lab_server, "GET", "7/items",
                      params={"offset": "2", "limit": "1", "_xsrf": "x", "token": lab_server.token})

    assert response.json() == {"items": [], "total": 3}
    [sent] = stand_in.received
    assert sent.query == {"offset": ["2"], "limit": ["1"]}


def test_a_body_is_sent_as_given_and_the_platforms_status_comes_back(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    annotation = {"item_id": "r1", "label": "pos", "client_id": "c-1"}
    stand_in.reply("POST", "/labelsets/7/annotations", 201, {"annotation": annotation})

    response = labels(lab_server, "POST", "7/annotations", json=annotation)

    assert response.status_code == 201
    assert response.json() == {"annotation": annotation}
    [sent] = stand_in.received
    assert (sent.method, sent.body) == ("POST", annotation)


def test_a_platform_error_keeps_its_status_and_message(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    error = {"status": 409, "message": "Item 'r1' already has 2 labels (k=2)."}
    stand_in.reply("POST", "/labelsets/7/annotations", 409, error)

    response = labels(lab_server, "POST", "7/annotations", json={"item_id": "r1", "label": "pos"})

    assert response.status_code == 409
    assert response.json() == error


def test_no_content_stays_no_content(lab_server: JupyterProcess,
                                     stand_in: PlatformStandIn) -> None:
    stand_in.reply("DELETE", "/labelsets/7", 204, content=b"")

    response = labels(lab_server, "DELETE", "7")

    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response.headers
    assert [(r.method, r.path) for r in stand_in.received] == [("DELETE", f"{API}/labelsets/7")]


def test_an_items_image_comes_back_as_its_bytes_and_media_type(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("GET", "/labelsets/7/items/cat%20001.png/image", 200, content=PNG,
                   content_type="image/png")

    response = labels(lab_server, "GET", "7/items/cat%20001.png/image")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content == PNG


@pytest.mark.parametrize("path", ["7/items/a%2F..%2F..%2Fusers/image", "7/%2e%2e/x", "7//next",
                                  "7/items/%00/image", "7/items/a%5Cb/image", "%2Fetc"])
def test_a_path_that_could_leave_the_label_sets_is_refused_here(
    lab_server: JupyterProcess, stand_in: PlatformStandIn, path: str
) -> None:
    response = labels(lab_server, "GET", path)

    assert response.status_code == 400
    assert response.json()["message"].startswith("path: ")
    assert stand_in.received == []


def test_dot_segments_sent_as_they_are_are_refused_here(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    # An HTTP client would resolve "..": send the request line as written.
    url = urlsplit(lab_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request("GET", "/himalia/labels/api/7/../../../api/v1/users",
                       headers={"Authorization": f"token {lab_server.token}"})
    response = connection.getresponse()

    assert response.status == 400
    assert json.loads(response.read())["message"].startswith("path: ")
    assert stand_in.received == []


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "PUT", "DELETE"])
def test_an_anonymous_request_is_refused(lab_server: JupyterProcess, stand_in: PlatformStandIn,
                                         method: str) -> None:
    response = labels(lab_server, method, "7", token=None, json={})

    assert response.status_code == 403
    assert stand_in.received == []


def test_a_browser_post_without_the_xsrf_token_is_refused(
    lab_server: JupyterProcess, stand_in: PlatformStandIn
) -> None:
    stand_in.reply("GET", "/labelsets/7", 200, LABELSET)
    browser = requests.Session()
    assert browser.get(f"{lab_server.url}?token={lab_server.token}", timeout=30).ok
    assert browser.get(f"{lab_server.url}himalia/labels/api/7", timeout=30).json() == LABELSET

    refused = browser.post(f"{lab_server.url}himalia/labels/api/7/snapshots", timeout=30)
    xsrf = browser.cookies["_xsrf"]
    stand_in.reply("POST", "/labelsets/7/snapshots", 201, {"version": 1})
    taken = browser.post(f"{lab_server.url}himalia/labels/api/7/snapshots",
                         headers={"X-XSRFToken": xsrf}, timeout=30)

    assert refused.status_code == 403
    assert taken.status_code == 201 and taken.json() == {"version": 1}
    assert [r.method for r in stand_in.received] == ["GET", "POST"]


def test_an_unreachable_platform_answers_503_without_leaking_the_token(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/services/himalia/"
    with jupyter_app(tmp_path, "jupyter_server", server_config(closed)) as server:
        response = labels(server, "GET", "7")

    assert response.status_code == 503
    assert response.json()["status"] == 503
    assert "Cannot reach the platform API" in response.json()["message"]
    assert PLATFORM_TOKEN not in response.text


def test_the_server_answers_others_while_the_platform_is_slow(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as platform:
        api_url = f"http://127.0.0.1:{platform.getsockname()[1]}/services/himalia/"
        # Longer than the status call below waits: a blocked server would fail it.
        config = server_config(api_url) + "c.HimaliaExtensionApp.request_timeout = 120\n"
        with jupyter_app(tmp_path, "jupyter_server", config) as server:
            answers: list[requests.Response] = []
            waiting = threading.Thread(target=lambda: answers.append(labels(server, "GET", "7")))
            waiting.start()
            connection, _ = platform.accept()
            with connection:
                # The platform holds the request unanswered: the server still serves others.
                assert server.get("api/status", server.token).status_code == 200
            waiting.join(timeout=30)

    [response] = answers
    assert response.status_code == 503
    assert response.json()["message"].startswith("Cannot reach the platform API")
