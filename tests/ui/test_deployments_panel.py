"""The Deployments panel, and the Runs panel's "Deploy…", in a real JupyterLab driven in headless
Chromium with Playwright.

Real: JupyterLab with the himalia labextension installed in the environment, its server extension
(``/himalia/deployments*``) and the ``himalia.sdk.Client`` it calls the platform with, and, for
"Deploy…", a plain MLflow tracking server holding one of ada's runs. Fake: the platform API's
deployments routes, answered from memory by ``fake_platform.FakeDeploymentsAPI`` in this process
(no BentoML build, nothing served; its metrics are made up from each version's traffic), so the
test sees each request arrive and can change a deployment as the platform would. Everything runs
on 127.0.0.1 on free ports, in its own process group, every directory temporary.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from himalia_testing import OFFLINE_LAB, jupyter_app
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Locator, Page, expect
from ui.fake_platform import FakeDeploymentsAPI
from unit.test_tracking_handlers import MlflowServer, mlflow_tracking_server

pytestmark = pytest.mark.browser

TOKEN = "token-of-ada-s-server"
PANEL = "#himalia-deployments"
FAILURE = "bentoml build: No module named 'sklearn' (add it to the model's requirements)"
#: The fake API makes up a point a minute for the last 30 minutes, for each version with traffic.
MINUTES = 30


@dataclass
class Lab:
    url: str
    run_id: str


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@pytest.fixture(scope="module")
def api() -> Iterator[FakeDeploymentsAPI]:
    with FakeDeploymentsAPI(TOKEN) as api:
        yield api


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_tracking_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="module")
def lab(api: FakeDeploymentsAPI, mlflow_server: MlflowServer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab as the hub starts it for ada, its platform client pointed at the fake API;
    one finished run of ada's in MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment("users/ada")
    run_id = client.create_run(experiment, run_name="Churn baseline",
                               tags={"himalia.user": "ada"}).info.run_id
    client.set_terminated(run_id)

    config = OFFLINE_LAB + (
        "from himalia.sdk import Client\n"
        f"c.HimaliaExtensionApp.client_factory = lambda: Client({api.url!r}, {TOKEN!r})\n")
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "JUPYTERHUB_USER": "ada",
           "MLFLOW_EXPERIMENT_NAME": "users/ada", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with jupyter_app(tmp_path_factory.mktemp("lab"), "jupyterlab", config, env) as app:
        yield Lab(f"{app.url}lab?token={app.token}", run_id)


@pytest.fixture(autouse=True)
def deployments(api: FakeDeploymentsAPI) -> None:
    """``churn``: version 2, a canary with 20% of the traffic, beside version 1; ``fraud``:
    one version that failed to build."""
    api.reset()
    api.add("churn", [
        {"version": 2, "traffic": 20, "model_uri": "runs:/c2c2/model", "bento_tag": "churn:v2"},
        {"version": 1, "traffic": 80, "model_uri": "runs:/c1c1/model"},
    ])
    api.add("fraud", [{"version": 1, "state": "failed", "reason": FAILURE}])


def open_panel(page: Page, lab: Lab) -> Locator:
    page.goto(f"{lab.url}&reset")
    page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{PANEL[1:]}"]').click(timeout=60_000)
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    return panel


def select(panel: Locator, name: str) -> Locator:
    """Click a deployment in the list; its detail."""
    panel.locator(f'.jp-himalia-deployment[data-name="{name}"] .jp-himalia-deployment-name').click()
    view = panel.locator(f'.jp-himalia-deployment-view[data-name="{name}"]')
    expect(view).to_be_visible()
    return view


def confirm(page: Page, button: str) -> None:
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_have_count(0)


def arrived(api: FakeDeploymentsAPI, method: str, path: str, count: int = 1,
            timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(api.calls(method, path)) < count:
        assert time.monotonic() < deadline, f"{method} {path} did not reach the platform"
        time.sleep(0.1)


def test_a_canary_is_shown_with_its_traffic_and_latency_then_promoted(
    page: Page, lab: Lab, api: FakeDeploymentsAPI, tmp_path: Path
) -> None:
    panel = open_panel(page, lab)
    rows = panel.locator(".jp-himalia-deployment")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="churn").locator(".jp-himalia-deployment-health")).to_have_text(
        "serving")

    view = select(panel, "churn")

    versions = view.locator(".jp-himalia-version")
    expect(versions).to_have_count(2)
    canary = view.locator('.jp-himalia-version[data-version="2"]')
    expect(canary).to_have_attribute("data-state", "serving")
    expect(canary.locator(".jp-himalia-version-traffic")).to_have_text("20%")
    expect(canary.locator(".jp-himalia-version-model")).to_have_text("runs:/c2c2/model")
    shares = view.locator(".jp-himalia-traffic-share")
    expect(shares).to_have_text(["v1 80%", "v2 20%"])
    old_width = shares.nth(0).bounding_box()["width"]
    new_width = shares.nth(1).bounding_box()["width"]
    assert old_width == pytest.approx(4 * new_width, rel=0.1)

    # Requests and p50/p95 latency per minute: one curve per version and measure.
    latency = view.locator('.jp-himalia-deployment-chart[data-metric="latency"] svg')
    expect(latency).to_have_attribute("data-points", str(2 * 2 * MINUTES))
    p95 = latency.locator('g[data-version="2"][data-measure="p95_ms"] polyline')
    expect(p95).to_have_attribute("data-points", str(MINUTES))
    assert len(p95.get_attribute("points").split()) == MINUTES
    requests = view.locator('.jp-himalia-deployment-chart[data-metric="requests"] svg')
    expect(requests.locator("polyline")).to_have_count(2)
    expect(view.locator('.jp-himalia-deployment-totals tr[data-version="2"] td')).to_have_count(5)
    page.screenshot(path=str(tmp_path / "deployments-canary.png"))

    view.get_by_role("button", name="Promote").click()
    confirm(page, "Promote")

    arrived(api, "POST", "/deployments/churn/promote")
    expect(shares).to_have_text(["v2 100%"])
    expect(canary.locator(".jp-himalia-version-traffic")).to_have_text("100%")
    old = view.locator('.jp-himalia-version[data-version="1"]')
    expect(old).to_have_attribute("data-state", "retired")
    expect(old.locator(".jp-himalia-version-reason")).to_have_text("replaced by version 2")
    expect(view.get_by_role("button", name="Promote")).to_be_disabled()
    expect(view.locator(".jp-himalia-error:visible")).to_have_count(0)


def test_a_new_key_is_shown_once_and_then_listed_by_its_prefix(
    page: Page, lab: Lab, api: FakeDeploymentsAPI
) -> None:
    view = select(open_panel(page, lab), "churn")
    keys = view.locator(".jp-himalia-keys")
    expect(keys.locator(".jp-himalia-note")).to_have_text("No API keys yet.")

    keys.get_by_label("Label of the new key").fill("batch scorer")
    keys.get_by_role("button", name="Create key").click()

    shown = keys.locator(".jp-himalia-new-key-value")
    expect(shown).to_have_text(re.compile(r"^hmk_[0-9a-f]{8}_\S{20,}$"))
    whole = shown.text_content()
    [created] = api.calls("POST", "/deployments/churn/keys")
    assert created.body == {"label": "batch scorer"}
    row = keys.locator(".jp-himalia-key")
    expect(row).to_have_count(1)
    expect(row.locator(".jp-himalia-key-prefix")).to_have_text(f"{whole[:12]}…")
    expect(row.locator(".jp-himalia-key-name")).to_have_text("batch scorer")
    expect(keys.get_by_label("Label of the new key")).to_have_value("")
    # Kept while the panel refreshes, until dismissed; after that, nowhere on the page.
    arrived(api, "GET", "/deployments/churn/keys", count=3)
    expect(shown).to_have_text(whole)

    keys.get_by_role("button", name="Done").click()

    expect(keys.locator(".jp-himalia-new-key")).to_be_hidden()
    expect(page.locator("body")).not_to_contain_text(whole)

    row.get_by_role("button", name="Revoke").click()
    confirm(page, "Revoke")

    arrived(api, "DELETE", f"/deployments/churn/keys/{row.get_attribute('data-key-id')}")
    expect(row.locator(".jp-himalia-key-revoked")).to_be_visible()
    expect(row.get_by_role("button", name="Revoke")).to_be_hidden()


def test_the_panel_follows_the_platform_and_shows_why_a_version_failed(
    page: Page, lab: Lab, api: FakeDeploymentsAPI
) -> None:
    panel = open_panel(page, lab)
    fraud = select(panel, "fraud")
    failed = fraud.locator('.jp-himalia-version[data-version="1"]')
    expect(failed.locator(".jp-himalia-version-state")).to_have_text("failed")
    expect(failed.locator(".jp-himalia-version-reason")).to_have_text(FAILURE)
    expect(fraud.locator(".jp-himalia-traffic")).to_have_attribute(
        "aria-label", "No version takes traffic")

    # The platform changes a version on its own: the panel shows it without being asked.
    churn = select(panel, "churn")
    api.change_version("churn", 2, state="failed", reason="health check timed out", traffic=0)

    canary = churn.locator('.jp-himalia-version[data-version="2"]')
    expect(canary).to_have_attribute("data-state", "failed", timeout=15_000)
    expect(canary.locator(".jp-himalia-version-reason")).to_have_text("health check timed out")
    expect(panel.locator('.jp-himalia-deployment[data-name="churn"] '
                         ".jp-himalia-deployment-health")).to_have_text("serving")

    canary.get_by_role("button", name="Logs").click()

    logs = page.locator(".jp-himalia-deployment-logs-text")
    expect(logs).to_contain_text("==> build of churn v2 <==")
    [asked] = api.calls("GET", "/deployments/churn/logs")
    assert asked.query["version"] == ["2"]

    churn.get_by_role("button", name="Undeploy").click()
    confirm(page, "Undeploy")

    arrived(api, "DELETE", "/deployments/churn")
    expect(panel.locator(".jp-himalia-deployment")).to_have_count(1)
    expect(panel.locator(".jp-himalia-deployment-view")).to_have_count(0)


def test_deploy_from_the_runs_panel_sends_the_runs_model_and_opens_the_deployment(
    page: Page, lab: Lab, api: FakeDeploymentsAPI
) -> None:
    page.goto(f"{lab.url}&reset")
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="himalia-runs"]').click(timeout=60_000)
    runs = page.locator("#himalia-runs")
    runs.get_by_role("button", name="All of mine").click()
    run = runs.locator(f'.jp-himalia-run[data-run-id="{lab.run_id}"]')

    run.get_by_role("button", name="Deploy…").click()

    dialog = page.locator(".jp-Dialog")
    name = dialog.get_by_label("Deployment name")
    expect(name).to_have_value("churn-baseline")
    expect(dialog).to_contain_text(f"runs:/{lab.run_id}/model")
    # A name the platform would refuse brings the form back, saying why.
    name.fill("Churn baseline")
    dialog.get_by_role("button", name="Deploy", exact=True).click()
    expect(dialog.locator(".jp-himalia-deploy-error")).to_contain_text("Deployment name:")
    assert api.calls("POST", "/deployments") == []

    dialog.get_by_label("Deployment name").fill("churn-v3")
    dialog.get_by_label("Canary %").fill("10")
    dialog.get_by_role("button", name="Deploy", exact=True).click()

    expect(dialog).to_have_count(0)
    arrived(api, "POST", "/deployments")
    [sent] = api.calls("POST", "/deployments")
    assert sent.body == {"name": "churn-v3", "model_uri": f"runs:/{lab.run_id}/model",
                         "canary_percent": 10}
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    view = panel.locator('.jp-himalia-deployment-view[data-name="churn-v3"]')
    expect(view.locator('.jp-himalia-version[data-version="1"]')).to_have_attribute(
        "data-state", "building")
    expect(panel.locator('.jp-himalia-deployment[data-name="churn-v3"]')).to_have_class(
        re.compile(r"\bjp-mod-selected\b"))
