"""The Jobs panel's REST routes (``/himalia/jobs*``) between JupyterLab and the platform API.

``jupyter server`` with the himalia extension runs on a free port in its own process group; its
platform client is the real ``himalia.sdk.Client``, pointed at a stand-in of the platform API
on 127.0.0.1 that records each request and answers what the test told it to.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from himalia_testing import JupyterProcess, free_port, jupyter_app

from himalia.extension.jobs import HANDLERS
from himalia.extension.platform import platform_error
from himalia.sdk import HimaliaError

API = "/services/himalia/api/v1"
PLATFORM_TOKEN = "platform-token-of-the-server"
NOTEBOOK = "analysis/report.ipynb"
RUN = {"id": 12, "job_id": 3, "state": "running", "trigger": "manual",
       "progress": {"cells_done": 1, "cells_total": 4, "fraction": 0.25}}


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    body: object
    authorization: str


@dataclass
class PlatformStandIn:
    """Answers ``(method, path)`` with what :meth:`reply` set; 404 for anything else."""

    url: str
    received: list[Received] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, bytes, str]] = field(default_factory=dict)

    def reply(self, method: str, path: str, status: int = 200, body: object = None, *,
              content: bytes | None = None, content_type: str = "application/json") -> None:
        data = content if content is not None else json.dumps(body).encode()
        self.replies[(method, API + path)] = (status, data, content_type)

    def reset(self) -> None:
        self.received.clear()
        self.replies.clear()


def platform_stand_in() -> tuple[PlatformStandIn, http.server.ThreadingHTTPServer]:
    port = free_port()
    stand_in = PlatformStandIn(url=f"http://127.0.0.1:{port}/services/himalia/")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            stand_in.received.append(Received(
                self.command, parts.path, parse_qs(parts.query),
                json.loads(raw) if raw else None, self.headers.get("authorization", "")))
            status, data, content_type = stand_in.replies.get(
                (self.command, parts.path),
                (404, json.dumps({"status": 404, "message": "no such route"}).encode(),
                 "application/json"))
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server's names

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stand_in, server


def parameters_notebook() -> dict:
    return {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n = 3",
             "outputs": [], "execution_count": None, "id": "params"},
            {"cell_type": "code", "metadata": {}, "source": "print('n is', n)",
             "outputs": [], "execution_count": None, "id": "show"},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def server_config(api_url: str) -> str:
    return ('c.ServerApp.jpserver_extensions = {"himalia.extension": True}\n'
            "from himalia.sdk import Client\n"
            f"c.HimaliaExtensionApp.client_factory = lambda: Client({api_url!r}, "
            f"{PLATFORM_TOKEN!r})\n")


@pytest.fixture(scope="module")
def platform() -> Iterator[PlatformStandIn]:
    stand_in, server = platform_stand_in()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def lab_server(platform: PlatformStandIn,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    tmp = tmp_path_factory.mktemp("lab")
    with jupyter_app(tmp, "jupyter_server", server_config(platform.url)) as server:
        notebook = tmp / "root" / NOTEBOOK
        notebook.parent.mkdir(parents=True)
        notebook.write_text(json.dumps(parameters_notebook()))
        (tmp / "root" / "notes.txt").write_text("not a notebook")
        yield server


@pytest.fixture(autouse=True)
def fresh_platform(platform: PlatformStandIn) -> None:
    platform.reset()


def call(server: JupyterProcess, method: str, route: str, token: str | None = "",
         **kwargs) -> requests.Response:
    token = server.token if token == "" else token
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(method, f"{server.url}himalia/{route}", headers=headers, timeout=60,
                            **kwargs)


# -- pure functions -------------------------------------------------------------------------------

def test_a_platform_refusal_keeps_its_status_and_loses_the_sdks_path_prefix() -> None:
    error = platform_error(HimaliaError(f"{API}/jobs: name: you already have a job named 'r'", 409))

    assert (error.status, error.message) == (409, "name: you already have a job named 'r'")


def test_no_answer_from_the_platform_is_a_503() -> None:
    error = platform_error(HimaliaError("Cannot reach the platform API at http://x/: refused"))

    assert error.status == 503 and error.message.startswith("Cannot reach the platform API")


def test_jobs_and_runs_are_routed_by_id_so_no_job_name_shadows_a_route() -> None:
    import re

    by_id = [pattern for pattern, _ in HANDLERS if "(" in pattern]
    for name in ("inspect", "schedule-preview", "runs"):
        assert not any(re.fullmatch(p, f"/himalia/jobs/{name}") for p in by_id), name


# -- creating a job -------------------------------------------------------------------------------

def test_create_sends_the_saved_notebook_as_json_and_the_fields_as_given(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    job = {"id": 3, "name": "report", "schedule": None, "parameters": {}}
    platform.reply("POST", "/jobs", 201, job)

    response = call(lab_server, "POST", "jobs", json={
        "path": NOTEBOOK, "name": "report", "parameters": {"n": 7}, "timezone": "Europe/Paris",
        "timeout_seconds": 600, "max_retries": 1})

    assert response.status_code == 201, response.text
    assert response.json() == job
    [sent] = platform.received
    assert (sent.method, sent.path) == ("POST", f"{API}/jobs")
    assert sent.authorization == f"token {PLATFORM_TOKEN}"
    assert isinstance(sent.body, dict) and "path" not in sent.body
    assert sent.body["notebook"]["cells"] == parameters_notebook()["cells"]
    assert {k: v for k, v in sent.body.items() if k != "notebook"} == {
        "name": "report", "parameters": {"n": 7}, "timezone": "Europe/Paris",
        "timeout_seconds": 600, "max_retries": 1}


def test_create_relays_the_platforms_refusal_naming_the_field(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    message = "parameters.n: must be a int (the parameters cell sets n = 3), got \"seven\""
    platform.reply("POST", "/jobs", 422, {"status": 422, "message": message})

    response = call(lab_server, "POST", "jobs",
                    json={"path": NOTEBOOK, "name": "report", "parameters": {"n": "seven"}})

    assert response.status_code == 422
    assert response.json() == {"status": 422, "message": message}


@pytest.mark.parametrize("body, status, words", [
    ({"name": "r", "path": "missing.ipynb"}, 404, "missing.ipynb"),
    ({"name": "r", "path": "notes.txt"}, 400, "not a notebook"),
    ({"name": "r"}, 400, "path"),
    ({"name": "r", "path": NOTEBOOK, "notebook": {}}, 400, "notebook"),
], ids=["missing", "not-a-notebook", "no-path", "inline-notebook"])
def test_a_bad_path_is_refused_here_and_nothing_reaches_the_platform(
    lab_server: JupyterProcess, platform: PlatformStandIn, body: dict, status: int, words: str
) -> None:
    response = call(lab_server, "POST", "jobs", json=body)

    assert response.status_code == status, response.text
    assert words in response.json()["message"]
    assert platform.received == []


def test_a_body_that_is_not_a_json_object_is_a_400(lab_server: JupyterProcess) -> None:
    response = call(lab_server, "POST", "jobs", data="[1, 2]")

    assert response.status_code == 400
    assert response.json()["message"] == "The request body must be a JSON object."


def test_inspect_sends_the_notebook_and_answers_its_typed_parameters(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    parameters = {"n": {"type": "int", "default": 3, "help": ""}}
    platform.reply("POST", "/jobs/inspect", 200, {"parameters": parameters})

    response = call(lab_server, "POST", "jobs/inspect", json={"path": NOTEBOOK})

    assert response.status_code == 200, response.text
    assert response.json() == {"parameters": parameters}
    [sent] = platform.received
    assert isinstance(sent.body, dict) and set(sent.body) == {"notebook"}
    assert sent.body["notebook"]["cells"][0]["source"] == "n = 3"


# -- schedules ------------------------------------------------------------------------------------

def test_schedule_preview_passes_cron_zone_and_count(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    times = ["2030-01-01T02:00:00+01:00", "2030-01-02T02:00:00+01:00"]
    platform.reply("GET", "/jobs/schedule-preview", 200, {"next": times})

    response = call(lab_server, "GET", "jobs/schedule-preview",
                    params={"cron": "0 2 * * *", "timezone": "Europe/Paris", "count": "2"})

    assert response.status_code == 200, response.text
    assert response.json() == {"next": times}
    [sent] = platform.received
    assert sent.query == {"cron": ["0 2 * * *"], "timezone": ["Europe/Paris"], "count": ["2"]}


def test_a_bad_cron_gives_the_platforms_own_message(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    message = "schedule: 'every day' is not a cron expression; use five fields"
    platform.reply("GET", "/jobs/schedule-preview", 422, {"status": 422, "message": message})

    response = call(lab_server, "GET", "jobs/schedule-preview", params={"cron": "every day"})

    assert response.status_code == 422
    assert response.json()["message"] == message


# -- jobs and runs --------------------------------------------------------------------------------

@pytest.mark.parametrize("method, route, upstream, status, body", [
    ("GET", "jobs", "/jobs", 200, None),
    ("GET", "jobs/3", "/jobs/3", 200, None),
    ("PATCH", "jobs/3", "/jobs/3", 200, {"paused": True}),
    ("GET", "jobs/3/runs", "/jobs/3/runs", 200, None),
    ("POST", "jobs/3/runs", "/jobs/3/runs", 201, {"parameters": {"n": 5}}),
    ("GET", "jobs/runs/12", "/runs/12", 200, None),
    ("POST", "jobs/runs/12/cancel", "/runs/12/cancel", 200, None),
    ("POST", "jobs/runs/12/rerun", "/runs/12/rerun", 201, None),
])
def test_job_and_run_routes_reach_the_platforms_own(
    lab_server: JupyterProcess, platform: PlatformStandIn, method: str, route: str,
    upstream: str, status: int, body: dict | None
) -> None:
    answers = {"/jobs": {"jobs": [{"id": 3}]}, "/jobs/3/runs": {"runs": [RUN]}}
    platform.reply(method, upstream, status, answers.get(upstream, RUN))

    response = call(lab_server, method, route, json=body)

    assert response.status_code == status, response.text
    assert response.json() == answers.get(upstream, RUN)
    [sent] = platform.received
    assert (sent.method, sent.path) == (method, API + upstream)
    if body is not None:
        assert sent.body == body


def test_delete_answers_204(lab_server: JupyterProcess, platform: PlatformStandIn) -> None:
    platform.reply("DELETE", "/jobs/3", 204, content=b"")

    response = call(lab_server, "DELETE", "jobs/3")

    assert response.status_code == 204
    assert [(r.method, r.path) for r in platform.received] == [("DELETE", f"{API}/jobs/3")]


def test_runs_are_paged_as_asked(lab_server: JupyterProcess, platform: PlatformStandIn) -> None:
    platform.reply("GET", "/jobs/3/runs", 200, {"runs": []})

    assert call(lab_server, "GET", "jobs/3/runs", params={"limit": "5"}).status_code == 200
    assert call(lab_server, "GET", "jobs/3/runs", params={"limit": "lots"}).status_code == 400

    [sent] = platform.received
    assert sent.query == {"offset": ["0"], "limit": ["5"]}


def test_a_run_that_is_not_yours_is_the_platforms_404(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    response = call(lab_server, "GET", "jobs/runs/99")

    assert response.status_code == 404
    assert response.json()["message"] == "no such route"


def test_html_output_is_served_as_html_in_a_sandbox(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    html = b"<html><body><pre>n is 7</pre><script>alert(1)</script></body></html>"
    platform.reply("GET", "/runs/12/output", 200, content=html, content_type="text/html")

    response = call(lab_server, "GET", "jobs/runs/12/output", params={"format": "html"})

    assert response.status_code == 200
    assert response.content == html
    assert response.headers["content-type"].startswith("text/html")
    assert "sandbox" in response.headers["content-security-policy"].split("; ")
    [sent] = platform.received
    assert sent.query == {"format": ["html"]}


def test_ipynb_output_is_a_download(lab_server: JupyterProcess, platform: PlatformStandIn) -> None:
    notebook = json.dumps(parameters_notebook()).encode()
    platform.reply("GET", "/runs/12/output", 200, content=notebook,
                   content_type="application/x-ipynb+json")

    response = call(lab_server, "GET", "jobs/runs/12/output", params={"format": "ipynb"})

    assert response.status_code == 200
    assert response.content == notebook
    assert response.headers["content-disposition"] == 'attachment; filename="run-12.ipynb"'


def test_output_not_there_yet_relays_the_platforms_message(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    message = "Run 12 (running) has no html output yet; it appears shortly after the run ends."
    platform.reply("GET", "/runs/12/output", 404, {"status": 404, "message": message})

    response = call(lab_server, "GET", "jobs/runs/12/output")

    assert response.status_code == 404
    assert response.json() == {"status": 404, "message": message}


def test_an_unknown_output_format_is_refused_here(
    lab_server: JupyterProcess, platform: PlatformStandIn
) -> None:
    response = call(lab_server, "GET", "jobs/runs/12/output", params={"format": "pdf"})

    assert response.status_code == 400
    assert response.json()["message"].startswith("format:")
    assert platform.received == []


def test_logs_are_plain_text(lab_server: JupyterProcess, platform: PlatformStandIn) -> None:
    platform.reply("GET", "/runs/12/logs", 200, content=b"==> stdout.log <==\nn is 7\n",
                   content_type="text/plain")

    response = call(lab_server, "GET", "jobs/runs/12/logs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "==> stdout.log <==\nn is 7\n"


@pytest.mark.parametrize("method, route", [
    ("GET", "jobs"), ("POST", "jobs"), ("POST", "jobs/inspect"),
    ("GET", "jobs/schedule-preview"), ("GET", "jobs/3"), ("PATCH", "jobs/3"),
    ("DELETE", "jobs/3"), ("GET", "jobs/3/runs"), ("POST", "jobs/3/runs"),
    ("GET", "jobs/runs/12"), ("POST", "jobs/runs/12/cancel"), ("POST", "jobs/runs/12/rerun"),
    ("GET", "jobs/runs/12/output"), ("GET", "jobs/runs/12/logs"),
])
def test_every_route_refuses_a_request_without_the_servers_token(
    lab_server: JupyterProcess, platform: PlatformStandIn, method: str, route: str
) -> None:
    response = call(lab_server, method, route, token=None, json={})

    assert response.status_code == 403
    assert platform.received == []


def test_an_unreachable_platform_answers_503_without_leaking_the_token(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/services/himalia/"
    with jupyter_app(tmp_path, "jupyter_server", server_config(closed)) as server:
        response = call(server, "GET", "jobs")

    assert response.status_code == 503
    assert "Cannot reach the platform API" in response.json()["message"]
    assert PLATFORM_TOKEN not in response.text
