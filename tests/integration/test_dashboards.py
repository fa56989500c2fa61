"""Dashboards on one real platform: the API, the Voilà service behind the hub's OAuth, a
dashboard fed by a real scheduled job's runs, and what viewers can and cannot reach."""

from __future__ import annotations

import json
import re
import uuid

import nbformat
import pytest
import requests

from himalia.sdk import Client, Jobs
from himalia_testing import Person, Platform, browser_log_in, wait_for
from playwright.sync_api import expect
from ui.conftest import browser, page  # noqa: F401  (real Chromium, as in the browser tests)

pytestmark = pytest.mark.timeout(900)
VIEW_SCOPES = ["access:services!service=dashboards", "access:services!service=himalia",
               "read:users:name!user", "read:users:groups!user", "read:roles:users!user"]


def notebook(*cells: str, markdown: str = "", parameters: str | None = None) -> dict:
    """Code ``cells`` after an optional ``markdown`` cell; ``parameters``: a first cell tagged
    for papermill (a job's notebook)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = ([nbformat.v4.new_markdown_cell(markdown)] if markdown else []) + [
        nbformat.v4.new_code_cell(c) for c in cells]
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.insert(0, cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


@pytest.fixture(scope="module")
def platform(proxy_bin):
    p = Platform(None, proxy_bin)
    try:
        p.start()
        yield p
    finally:
        p.close()


class Viewer(Person):
    """A person with a hub token that reaches the dashboards service too."""

    def __init__(self, platform: Platform, name: str, role: str | None):
        assert platform.api("POST", f"/users/{name}").status_code == 201
        platform.set_role(name, role)
        assert platform.role_of(name) == role
        # Without a role, nobody holds the scope to use the dashboards service: a plain token.
        body = {"note": "tests", "scopes": VIEW_SCOPES} if role else {"note": "tests"}
        r = platform.api("POST", f"/users/{name}/tokens", json=body)
        assert r.status_code == 201, r.text
        super().__init__(platform, name, token=r.json()["token"])

    def page(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"{self.platform.url}/services/dashboards/{path}", headers=self.headers,
                            timeout=120, allow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def people(platform):
    return {
        "ann": Viewer(platform, "ann", "scientist"),
        "bob": Viewer(platform, "bob", "scientist"),
        "vera": Viewer(platform, "vera", "viewer"),
        "walt": Viewer(platform, "walt", "viewer"),
        "nora": Viewer(platform, "nora", None),
    }


def outputs(html: str) -> str:
    """The text of the executed cells in a rendered dashboard (its outputs are in the HTML)."""
    cells = html.split('id="rendered_cells"', 1)[-1]
    return " ".join(re.sub(r"<[^>]+>", " ", cells).split())


REPORT = notebook(
    "import os, httpx\n"
    "print('ANSWER', 6 * 7)\n"
    "print('UID', os.getuid())\n"
    "print('SECRETS', sorted(k for k in os.environ if 'SECRET' in k or 'DB_URL' in k or 'COOKIE' in k))\n"
    "api = os.environ['HIMALIA_API_URL'] + 'api/v1/'\n"
    "auth = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
    "print('LIST', httpx.get(api + 'jobs', headers=auth).status_code)\n"
    "print('WRITE', httpx.post(api + 'dashboards', headers=auth, json={}).status_code)\n",
    markdown="# Quarterly report",
)


def test_publish_render_and_share(platform, people):
    ann, vera, walt = people["ann"], people["vera"], people["walt"]
    made = ann.ok("POST", "/dashboards", 201, json={"name": "quarterly", "notebook": REPORT,
                                                    "share": {"users": ["vera"]}})
    assert made["title"] == "Quarterly report" and made["version"] == 1 and made["owner"] == "ann"
    assert made["url"].endswith("/services/dashboards/quarterly/")

    assert [d["name"] for d in vera.ok("GET", "/dashboards")["dashboards"]] == ["quarterly"]
    assert walt.ok("GET", "/dashboards")["dashboards"] == []
    assert walt.call("GET", "/dashboards/quarterly").status_code == 404

    r = vera.page("quarterly/")
    assert r.status_code == 200, r.text[-2000:]
    text = outputs(r.text)
    assert "ANSWER 42" in text, r.text[-3000:]
    # The kernel runs as ann's account (never root), with none of the service's secrets, and
    # its key reads nothing but a linked job's outputs (it has none) and writes nothing.
    uid = int(re.search(r"UID (\d+)", text).group(1))
    assert uid != 0
    import pwd
    assert pwd.getpwuid(uid).pw_name == f"{platform.user_prefix}ann"
    assert "SECRETS []" in text
    assert "LIST 403" in text and "WRITE 405" in text
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    # Everything the page loads comes from the platform itself (no CDN).
    loaded = re.findall(r'(?:src|href)="(https?://[^"]+)"', r.text)
    assert loaded == [], loaded
    assert 'id="himalia-dashboard-bar"' in r.text and "Quarterly report" in r.text

    # Once the pool has a started kernel again (HEAD asks without taking it), the next visit is
    # served by it, without starting one.
    wait_for(lambda: requests.head(f"{platform.url}/services/dashboards/quarterly/", headers=vera.headers,
                                   timeout=30).headers.get("X-Himalia-Preheated") == "1",
             60, what="a pre-heated kernel")
    assert vera.page("quarterly/").headers["X-Himalia-Preheated"] == "1"

    assert walt.page("quarterly/").status_code == 404
    gallery = vera.page("")
    assert gallery.status_code == 200 and 'data-dashboard="quarterly"' in gallery.text
    assert 'data-dashboard="quarterly"' not in walt.page("").text
    assert vera.ok("GET", "/dashboards/quarterly")["views"] >= 2

    # Shared with every viewer: walt sees it too; unpublished: nobody does.
    ann.ok("PATCH", "/dashboards/quarterly", json={"share": {"users": [], "viewers": True}})
    assert walt.page("quarterly/").status_code == 200
    ann.ok("DELETE", "/dashboards/quarterly", 204)
    assert vera.page("quarterly/").status_code == 404
    assert vera.ok("GET", "/dashboards")["dashboards"] == []


def test_republish_makes_a_new_version(platform, people):
    ann, vera = people["ann"], people["vera"]
    first = notebook("print('EDITION', 1)")
    ann.ok("POST", "/dashboards", 201, json={"name": "editions", "notebook": first, "title": "Editions",
                                             "share": {"users": ["vera"]}})
    assert "EDITION 1" in outputs(vera.page("editions/").text)
    again = ann.ok("POST", "/dashboards", 200, json={"name": "editions", "notebook": notebook("print('EDITION', 2)")})
    assert again["version"] == 2 and again["title"] == "Editions"
    assert "EDITION 2" in outputs(vera.page("editions/").text)
    versions = ann.ok("GET", "/dashboards/editions/versions")["versions"]
    assert [v["version"] for v in versions] == [2, 1] and versions[0]["sha256"] != versions[1]["sha256"]
    # Another scientist cannot take the name or change it.
    bob = people["bob"]
    assert bob.call("POST", "/dashboards", json={"name": "editions", "notebook": first}).status_code == 409
    assert bob.call("DELETE", "/dashboards/editions").status_code == 404


def test_a_dashboard_shows_its_jobs_latest_successful_run(platform, people):
    ann, vera = people["ann"], people["vera"]
    jobs = Jobs(Client(f"{platform.url}/services/himalia/", ann.token))
    job_nb = notebook("from himalia.sdk import record\nrecord('revenue', {'total': revenue})")
    job_nb["cells"].insert(0, nbformat.v4.new_code_cell("revenue = 10"))
    job_nb["cells"][0]["metadata"]["tags"] = ["parameters"]
    job = jobs.create("nightly-revenue", notebook=job_nb)
    run = jobs.run(job["id"], {"revenue": 111})
    assert jobs.wait(run["id"], timeout=300)["state"] == "succeeded"

    dash = notebook("import himalia.sdk\n"
                    f"print('TOTAL', himalia.sdk.latest({job['id']}, 'revenue')['total'])\n"
                    "print('BY NAME', himalia.sdk.latest('nightly-revenue', 'revenue')['total'])")
    made = ann.ok("POST", "/dashboards", 201, json={"name": "revenue", "notebook": dash, "job_id": "nightly-revenue",
                                                    "share": {"users": ["vera"]}})
    assert made["job_id"] == job["id"] and made["freshness"]["run_id"] == run["id"]
    page = vera.page("revenue/")
    assert "TOTAL 111" in outputs(page.text) and "BY NAME 111" in outputs(page.text), page.text[-1500:]
    assert 'id="himalia-freshness"' in page.text and "data from" in page.text

    # A new successful run changes what the viewer sees (the pre-heated kernels are refilled).
    second = jobs.run(job["id"], {"revenue": 222})
    assert jobs.wait(second["id"], timeout=300)["state"] == "succeeded"
    page = vera.page("revenue/")
    assert "TOTAL 222" in outputs(page.text)
    assert page.headers["X-Himalia-Data-Run"] == str(second["id"])
    assert vera.ok("GET", "/dashboards/revenue")["freshness"]["run_id"] == second["id"]
    # A job that is not yours cannot feed your dashboard.
    r = people["bob"].call("POST", "/dashboards", json={"name": "theirs", "notebook": dash, "job_id": job["id"]})
    assert r.status_code == 404 and "no job" in r.json()["message"]


def test_viewers_reach_only_their_dashboards(platform, people):
    ann, vera, walt, nora = people["ann"], people["vera"], people["walt"], people["nora"]
    ann.ok("POST", "/dashboards", 201, json={"name": "secured", "notebook": notebook("print('ok')"),
                                             "share": {"users": ["vera"]}})
    assert vera.page("secured/").status_code == 200
    # Writes of the API, servers, MLflow and deployments stay closed to viewers.
    assert vera.call("POST", "/dashboards", json={"name": "mine", "notebook": notebook("1")}).status_code == 403
    assert vera.call("PATCH", "/dashboards/secured", json={"title": "x"}).status_code == 403
    assert vera.call("DELETE", "/dashboards/secured").status_code == 403
    assert vera.call("POST", "/deployments", json={"name": "x", "model": "models:/x/1"}).status_code == 403
    assert vera.call("POST", "/jobs", json={"name": "x", "notebook": notebook("1")}).status_code == 403
    assert requests.post(f"{platform.url}/hub/api/users/vera/server", headers=vera.headers, timeout=30).status_code == 403
    assert requests.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/search?max_results=1",
                        headers=vera.headers, timeout=30).status_code in (401, 403)
    # No kernel API: listing, starting, or touching a kernel that is not their page's.
    assert vera.page("api/kernels").status_code in (403, 404, 405)
    r = requests.post(f"{platform.url}/services/dashboards/api/kernels", headers=vera.headers, timeout=30)
    assert r.status_code in (403, 404, 405)
    some = str(uuid.uuid4())
    assert vera.page(f"api/kernels/{some}").status_code == 404
    assert requests.post(f"{platform.url}/services/dashboards/voila/api/shutdown/{some}",
                         headers=vera.headers, timeout=30).status_code in (403, 404)
    # A page's kernel is its viewer's: another person cannot reach it, and the viewer's channel
    # carries widget messages only, never code.
    page = vera.page("secured/")
    kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', page.text).group(1)
    assert vera.page(f"api/kernels/{kernel_id}").status_code == 200
    assert walt.page(f"api/kernels/{kernel_id}").status_code == 404
    assert requests.post(f"{platform.url}/services/dashboards/voila/api/shutdown/{kernel_id}",
                         headers=walt.headers, timeout=30).status_code in (403, 404)
    assert code_runs(platform, vera, kernel_id) is False
    # People without a role, anonymous callers and unshared viewers get nothing.
    assert nora.page("secured/").status_code in (403, 404)
    assert nora.call("GET", "/dashboards").status_code == 403
    anonymous = requests.get(f"{platform.url}/services/dashboards/secured/", allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302 and "/hub/api/oauth2/authorize" in anonymous.headers["Location"]
    assert walt.page("secured/").status_code == 404
    assert walt.page("secured/thumbnail.png").status_code == 404
    # The data pass-through needs a dashboard's key.
    r = requests.get(f"{platform.url}/services/dashboards/data/api/v1/jobs", headers=vera.headers, timeout=30)
    assert r.status_code == 401


def code_runs(platform: Platform, who: Viewer, kernel_id: str) -> bool:
    """Send code to a dashboard kernel's channel, then a kernel_info_request: whether the code
    was executed by the time the (later) kernel_info_reply arrives."""
    import websocket

    url = platform.url.replace("http://", "ws://") + f"/services/dashboards/api/kernels/{kernel_id}/channels"
    ws = websocket.create_connection(url, header=[f"Authorization: {who.headers['Authorization']}"], timeout=60)
    try:
        def send(kind: str, content: dict) -> str:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({"header": {"msg_id": msg_id, "username": who.name, "session": msg_id,
                                           "msg_type": kind, "version": "5.3"},
                                "parent_header": {}, "metadata": {}, "channel": "shell", "content": content}))
            return msg_id

        code = send("execute_request", {"code": "print('INJECTED')", "silent": False, "store_history": False,
                                        "user_expressions": {}, "allow_stdin": False})
        info = send("kernel_info_request", {})
        ran = False
        while True:
            msg = json.loads(ws.recv())
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent == code and msg["msg_type"] in ("execute_reply", "stream", "execute_input"):
                ran = True
            if parent == info and msg["msg_type"] == "kernel_info_reply":
                return ran
    finally:
        ws.close()


@pytest.mark.parametrize("path", [
    "voila/static/../../../../../../etc/passwd",
    "voila/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "voila/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "voila/static//etc/passwd",
    "voila/templates/lab/static/../../../../../../../etc/passwd",
    "voila/templates/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "voila/templates//etc/passwd",
    "voila/labextensions/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "voila/files/etc/passwd",
    "voila/files/%2fetc%2fpasswd",
    "voila/render/etc/passwd",
    "voila/tree",
    "voila/api/contents/",
    "secured/../../../etc/passwd",
    "secured/%2e%2e/%2e%2e/etc/passwd",
    "voila/api/themes/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
])
def test_no_file_beyond_the_dashboards_is_served(platform, people, path):
    r = people["vera"].page(path)
    assert "root:x:0:0" not in r.text
    assert r.status_code in (301, 302, 400, 403, 404, 405), (path, r.status_code)


def test_bad_input_is_refused_with_a_message(platform, people):
    ann = people["ann"]
    cases = [
        ({"name": "Bad Name", "notebook": notebook("1")}, 400, "name"),
        ({"name": "api", "notebook": notebook("1")}, 400, "reserved"),
        ({"name": "nonb"}, 400, "notebook"),
        ({"name": "broken", "notebook": {"cells": "no"}}, 400, "nbformat"),
        ({"name": "both", "notebook": notebook("1"), "path": "x.ipynb"}, 400, "not both"),
        ({"name": "outside", "path": "../../etc/passwd"}, 403, "outside your files"),
        ({"name": "nojob", "notebook": notebook("1"), "job_id": 999999}, 404, "no job"),
        ({"name": "share", "notebook": notebook("1"), "share": {"users": "vera"}}, 400, "share.users"),
        ({"name": "extra", "notebook": notebook("1"), "colour": "red"}, 400, "Unknown field"),
    ]
    for body, status, words in cases:
        r = ann.call("POST", "/dashboards", json=body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert words in r.json()["message"], (body, r.json())
    # Nothing was partly written.
    names = {d["name"] for d in ann.ok("GET", "/dashboards?mine=true")["dashboards"]}
    assert not names & {body["name"] for body, _, _ in cases}


# -- in the browser ----------------------------------------------------------------------------
JOB_PARAMETERS = "scale = 1"
JOB_BODY = ("from himalia.sdk import record\n"
            "record('sales', {'month': list(range(1, 13)), 'amount': [scale * m * 10 for m in range(1, 13)]})")
DASHBOARD_TITLE = "# Sales overview"
DASHBOARD = [
    "import himalia.sdk, os\n"
    "import matplotlib.pyplot as plt\n"
    "import ipywidgets as widgets\n"
    "sales = himalia.sdk.latest(int(os.environ['HIMALIA_DASHBOARD_JOB_ID']), 'sales')\n"
    "fig, ax = plt.subplots(figsize=(5, 3))\n"
    "ax.bar(sales['month'], sales['amount'])\n"
    "ax.set_title('Sales per month')\n"
    "plt.show()",
    "months = widgets.IntSlider(value=3, min=1, max=12, description='Months')\n"
    "total = widgets.Label()\n"
    "def show(change=None):\n"
    "    total.value = f\"Total of the first {months.value} months: {sum(sales['amount'][:months.value])}\"\n"
    "months.observe(show, names='value')\n"
    "show()\n"
    "widgets.VBox([months, total])",
]


def test_a_viewer_opens_a_dashboard_and_moves_its_slider(platform, people, page):
    ann = people["ann"]
    password = platform.create_user("vic", "viewer")
    jobs = Jobs(Client(f"{platform.url}/services/himalia/", ann.token))
    job = jobs.create("monthly-sales", notebook=notebook(JOB_BODY, parameters=JOB_PARAMETERS))
    first = jobs.run(job["id"], {"scale": 1})
    assert jobs.wait(first["id"], timeout=300)["state"] == "succeeded"
    ann.ok("POST", "/dashboards", 201, json={
        "name": "sales", "notebook": notebook(*DASHBOARD, markdown=DASHBOARD_TITLE), "job_id": job["id"],
        "description": "Monthly sales, refreshed nightly", "share": {"viewers": True}})

    browser_log_in(page, platform, "vic", password)
    page.goto(f"{platform.url}/hub/home")
    page.locator("#himalia-dashboards-link").click()
    card = page.locator('[data-dashboard="sales"]')
    expect(card).to_contain_text("Sales overview")
    expect(card).to_contain_text("by ann")
    expect(card).to_contain_text(re.compile(r"data from today \d\d:\d\d"))
    card.click()

    expect(page).to_have_url(f"{platform.url}/services/dashboards/sales/")
    expect(page.locator("#himalia-dashboard-bar h1")).to_have_text("Sales overview")
    expect(page.locator("#himalia-freshness")).to_contain_text("data from today")
    chart = page.locator("#rendered_cells img")
    expect(chart).to_be_visible(timeout=60_000)
    assert chart.evaluate("img => img.naturalWidth") > 100
    # No code is shown to viewers.
    expect(page.locator(".jp-InputArea-editor")).to_have_count(0)

    label = page.locator(".widget-label").filter(has_text="Total of the first")
    expect(label).to_have_text("Total of the first 3 months: 60", timeout=60_000)
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.focus()
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    # The slider's new value went to the kernel, whose callback changed the label.
    expect(label).to_have_text("Total of the first 5 months: 150", timeout=30_000)

    # A new successful run of the job: the next visit shows its numbers.
    second = jobs.run(job["id"], {"scale": 2})
    assert jobs.wait(second["id"], timeout=300)["state"] == "succeeded"
    page.reload()
    label = page.locator(".widget-label").filter(has_text="Total of the first")
    expect(label).to_have_text("Total of the first 3 months: 120", timeout=60_000)
    assert ann.ok("GET", "/dashboards/sales")["views"] >= 2
