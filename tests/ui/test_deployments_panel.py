"""The Runs panel's "Deploy…" and the Deployments panel in a real JupyterLab, against the real
platform.

``himalia up`` runs once for the module: its deployment manager builds each version of an MLflow
model into a bento and serves it with ``bentoml serve`` behind the hub at ``/models/<name>/``.
A scientist logs real scikit-learn models to the platform's MLflow. JupyterLab runs standalone
with the environment the hub gives a server it spawns: its server extension calls the platform
API with the scientist's token, and the Runs panel reads the platform's MLflow with it. Headless
Chromium drives JupyterLab; every process runs in its own process group on a free port, every
directory temporary. Nothing is faked: predictions, latencies and API keys are the platform's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from himalia_testing import OFFLINE_LAB, Platform, jupyter_app, mlflow_client
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Locator, Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

API = "/services/himalia/api/v1"
PANEL = "#himalia-deployments"
RUNS = "#himalia-runs"
#: Deployed from the Runs panel; its second version is deployed as a canary.
CHURN = "churn"
CANARY_PERCENT = 20
#: A colleague's deployment, shared with the scientist; its only version cannot start.
FRAUD = "fraud"
BROKEN_SERVICE = ("def preprocess(frame):\n    return frame\n\n"
                  "raise RuntimeError('broken on purpose')\n")
COLUMNS = ["a", "b"]
ROWS = [[0.9, 0.1], [0.1, 0.9], [0.6, 0.5]]
PREDICTIONS = 5
#: Building a version and starting it takes a while on a small machine.
SERVING_MS = 240_000
#: The panel asks the platform again every 5 s while it is shown.
REFRESH_MS = 15_000


@dataclass
class Person:
    """Someone with a platform role and a hub token of theirs."""

    platform: Platform
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """The platform API, as this person."""
        return requests.request(method, f"{self.platform.url}{API}{path}", headers=self.headers,
                                timeout=60, **kwargs)

    def deploy(self, **fields) -> dict:
        r = self.call("POST", "/deployments", json=fields)
        assert r.status_code == 202, r.text
        return r.json()["version"]


@dataclass
class Models:
    """The scientist's two runs, each with a scikit-learn model at ``model``."""

    baseline_run: str
    retrained_run: str


def predict(platform: Platform, name: str, headers: dict[str, str]) -> requests.Response:
    """One request to the deployment's endpoint, through the hub, as a program sends it."""
    return requests.post(f"{platform.url}/models/{name}/predict", headers=headers, timeout=60,
                         json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}})


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@pytest.fixture(scope="module")
def platform(proxy_bin: Path) -> Iterator[Platform]:
    p = Platform(None, proxy_bin)
    p.write_config(deploy_smoke_timeout=8, deploy_start_timeout=120)
    try:
        p.start(timeout=180)
        yield p
    finally:
        p.close()


def person(platform: Platform, name: str) -> Person:
    assert platform.api("POST", f"/users/{name}").status_code == 201
    platform.set_role(name, "scientist")
    r = platform.api("POST", f"/users/{name}/tokens", json={"note": "Deployments panel tests"})
    assert r.status_code == 201, r.text
    return Person(platform, name, r.json()["token"])


@pytest.fixture(scope="module")
def scientist(platform: Platform, unique_name_module) -> Person:
    return person(platform, unique_name_module("dp"))


@pytest.fixture(scope="module")
def colleague(platform: Platform, unique_name_module) -> Person:
    return person(platform, unique_name_module("dc"))


def log_sklearn(mlflow, run_name: str, flip: bool = False) -> str:
    """A logistic regression, logged as the notebooks log one; its run's id."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.random(200), "b": rng.random(200)})
    y = (X.a > X.b).astype(int)
    model = LogisticRegression().fit(X, 1 - y if flip else y)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                 signature=infer_signature(X, model.predict(X)),
                                 pip_requirements=["scikit-learn"])
    return run.info.run_id


@pytest.fixture(scope="module")
def models(platform: Platform, scientist: Person) -> Iterator[Models]:
    """Two runs of the scientist's in their own experiment of the platform's MLflow, logged by
    the MLflow client in this process with the scientist's token."""
    import mlflow

    with pytest.MonkeyPatch.context() as env, mlflow_client(
            f"{platform.url}/services/mlflow", token=scientist.token,
            experiment=f"users/{scientist.name}"):
        env.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield Models(baseline_run=log_sklearn(mlflow, "Churn baseline"),
                     retrained_run=log_sklearn(mlflow, "Churn retrained", flip=True))


@pytest.fixture(scope="module")
def colleagues_deployment(colleague: Person, scientist: Person, models: Models) -> str:
    """``fraud``: the colleague's, shared with the scientist; its version's service code raises
    when ``bentoml serve`` imports it. Deployed, not waited for: it fails while the Lab starts."""
    colleague.deploy(name=FRAUD, model_uri=f"runs:/{models.baseline_run}/model",
                     service_code=BROKEN_SERVICE, shared_with=[scientist.name])
    return FRAUD


@pytest.fixture(scope="module")
def lab(platform: Platform, scientist: Person, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[str]:
    """JupyterLab with the environment the hub gives the scientist's server: the platform API
    and MLflow, both with the scientist's token; yields the ``/lab?token=`` URL."""
    env = {
        "HIMALIA_API_URL": f"{platform.url}/services/himalia/",
        "JUPYTERHUB_API_TOKEN": scientist.token,
        "JUPYTERHUB_USER": scientist.name,
        "MLFLOW_TRACKING_URI": f"{platform.url}/services/mlflow",
        "MLFLOW_TRACKING_TOKEN": scientist.token,
        "MLFLOW_EXPERIMENT_NAME": f"users/{scientist.name}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    with jupyter_app(tmp_path_factory.mktemp("lab"), "jupyterlab", OFFLINE_LAB, env) as app:
        yield f"{app.url}lab?token={app.token}"


def open_sidebar(page: Page, lab: str, panel: str) -> Locator:
    """Load JupyterLab (its layout reset) and show a sidebar panel."""
    page.goto(f"{lab}&reset")
    page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{panel[1:]}"]').click(timeout=60_000)
    shown = page.locator(panel)
    expect(shown).to_be_visible()
    return shown


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


def test_a_run_deployed_from_the_runs_panel_serves_then_is_canaried_keyed_and_rolled_back(
    colleagues_deployment: str, page: Page, lab: str, platform: Platform, scientist: Person,
    colleague: Person, models: Models, tmp_path: Path
) -> None:
    runs = open_sidebar(page, lab, RUNS)
    runs.get_by_role("button", name="All of mine").click()
    run = runs.locator(f'.jp-himalia-run[data-run-id="{models.baseline_run}"]')

    run.get_by_role("button", name="Deploy…").click()

    dialog = page.locator(".jp-Dialog")
    name = dialog.get_by_label("Deployment name")
    expect(name).to_have_value("churn-baseline")
    expect(dialog).to_contain_text(f"runs:/{models.baseline_run}/model")
    # A name that cannot be one brings the form back, saying why, before anything is sent.
    name.fill("Churn baseline")
    dialog.get_by_role("button", name="Deploy", exact=True).click()
    expect(dialog.locator(".jp-himalia-deploy-error")).to_contain_text("Deployment name:")
    # A name the platform refuses (a colleague's deployment has it): the platform's message.
    dialog.get_by_label("Deployment name").fill(colleagues_deployment)
    dialog.get_by_role("button", name="Deploy", exact=True).click()
    expect(dialog.locator(".jp-himalia-deploy-error")).to_have_text(
        f"The name '{FRAUD}' is taken by {colleague.name}'s deployment; choose another.")
    listed = scientist.call("GET", "/deployments").json()["deployments"]
    assert [d["name"] for d in listed] == [FRAUD]

    dialog.get_by_label("Deployment name").fill(CHURN)
    expect(dialog.get_by_label("Canary %")).to_have_value("0")
    dialog.get_by_role("button", name="Deploy", exact=True).click()

    expect(dialog).to_have_count(0)
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    row = panel.locator(f'.jp-himalia-deployment[data-name="{CHURN}"]')
    expect(row).to_have_class(re.compile(r"\bjp-mod-selected\b"))
    view = panel.locator(f'.jp-himalia-deployment-view[data-name="{CHURN}"]')
    v1 = view.locator('.jp-himalia-version[data-version="1"]')
    expect(v1.locator(".jp-himalia-version-model")).to_have_text(
        f"runs:/{models.baseline_run}/model")
    # Built, started, checked, then given the traffic: the panel follows it on its own.
    expect(v1).to_have_attribute("data-state", "serving", timeout=SERVING_MS)
    expect(v1.locator(".jp-himalia-version-traffic")).to_have_text("100%")
    expect(row.locator(".jp-himalia-deployment-health")).to_have_text("serving")
    expect(view.locator(".jp-himalia-deployment-endpoint")).to_have_text(
        re.compile(rf"^POST http://\S+/models/{CHURN}/predict$"))

    # Real requests: their count and p50/p95 latency per minute come back as points.
    for _ in range(PREDICTIONS):
        r = predict(platform, CHURN, scientist.headers)
        assert r.status_code == 200 and r.headers["X-Himalia-Version"] == "1", r.text
    totals = view.locator('.jp-himalia-deployment-totals tr[data-version="1"] td')
    expect(totals.nth(1)).to_have_text(str(PREDICTIONS), timeout=REFRESH_MS)
    expect(totals).to_have_count(5)
    expect(totals.nth(2)).to_have_text("0")
    latency = view.locator('.jp-himalia-deployment-chart[data-metric="latency"] svg')
    expect(latency).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    for measure in ("p50_ms", "p95_ms"):
        curve = latency.locator(f'g[data-version="1"][data-measure="{measure}"]')
        expect(curve.locator("polyline")).to_have_attribute("data-points",
                                                            re.compile(r"^[1-9]\d*$"))
        expect(curve.locator("circle").first).to_be_visible()
    requests_chart = view.locator('.jp-himalia-deployment-chart[data-metric="requests"] svg')
    expect(requests_chart.locator('g[data-version="1"] circle').first).to_be_visible()

    # A canary of the retrained model: the panel shows the split once it serves.
    scientist.deploy(name=CHURN, model_uri=f"runs:/{models.retrained_run}/model",
                     canary_percent=CANARY_PERCENT)
    v2 = view.locator('.jp-himalia-version[data-version="2"]')
    expect(v2).to_have_attribute("data-state", "serving", timeout=SERVING_MS)
    shares = view.locator(".jp-himalia-traffic-share")
    expect(shares).to_have_text([f"v1 {100 - CANARY_PERCENT}%", f"v2 {CANARY_PERCENT}%"],
                                timeout=REFRESH_MS)
    expect(v2.locator(".jp-himalia-version-traffic")).to_have_text(f"{CANARY_PERCENT}%")
    stable_width = shares.nth(0).bounding_box()["width"]
    canary_width = shares.nth(1).bounding_box()["width"]
    ratio = (100 - CANARY_PERCENT) / CANARY_PERCENT
    assert stable_width == pytest.approx(ratio * canary_width, rel=0.1)
    page.screenshot(path=str(tmp_path / "deployments-canary.png"))
    expect(view.get_by_role("button", name="Rollback")).to_have_attribute(
        "title", "The canary, version 2, is retired; version 1 takes all the traffic again.")

    view.get_by_role("button", name="Promote").click()
    confirm(page, "Promote")

    expect(shares).to_have_text(["v2 100%"])
    expect(v2.locator(".jp-himalia-version-traffic")).to_have_text("100%")
    expect(v1).to_have_attribute("data-state", "retired")
    expect(v1.locator(".jp-himalia-version-reason")).to_have_text("replaced by version 2")
    expect(view.get_by_role("button", name="Promote")).to_be_disabled()
    expect(view.locator(".jp-himalia-error:visible")).to_have_count(0)
    assert predict(platform, CHURN, scientist.headers).headers["X-Himalia-Version"] == "2"

    # An API key for a program: shown whole once, then listed by its prefix.
    keys = view.locator(".jp-himalia-keys")
    expect(keys.locator(".jp-himalia-note")).to_have_text("No API keys yet.")
    keys.get_by_label("Label of the new key").fill("batch scorer")
    keys.get_by_role("button", name="Create key").click()

    shown = keys.locator(".jp-himalia-new-key-value")
    expect(shown).to_have_text(re.compile(r"^hmk_[0-9a-f]{8}_\S{20,}$"))
    whole = shown.text_content()
    key = keys.locator(".jp-himalia-key")
    expect(key).to_have_count(1)
    expect(key.locator(".jp-himalia-key-prefix")).to_have_text(f"{whole[:12]}…")
    expect(key.locator(".jp-himalia-key-name")).to_have_text("batch scorer")
    expect(key.locator(".jp-himalia-key-used")).to_contain_text("never used")
    expect(keys.get_by_label("Label of the new key")).to_have_value("")

    by_key = {"Authorization": f"Bearer {whole}"}
    r = predict(platform, CHURN, by_key)
    assert r.status_code == 200 and r.headers["X-Himalia-Version"] == "2", r.text
    # The panel's next refresh shows the key used, and still shows the new key.
    used = key.locator(".jp-himalia-key-used")
    expect(used).to_contain_text("last used", timeout=REFRESH_MS)
    expect(shown).to_have_text(whole)

    keys.get_by_role("button", name="Done").click()

    expect(keys.locator(".jp-himalia-new-key")).to_be_hidden()
    expect(page.locator("body")).not_to_contain_text(whole)

    key.get_by_role("button", name="Revoke").click()
    confirm(page, "Revoke")

    expect(key.locator(".jp-himalia-key-revoked")).to_be_visible()
    expect(key.get_by_role("button", name="Revoke")).to_be_hidden()
    assert predict(platform, CHURN, by_key).status_code == 401

    # A version's logs: its build, then its serve log.
    v2.get_by_role("button", name="Logs").click()

    logs = page.locator(".jp-himalia-deployment-logs-text")
    expect(logs).to_contain_text("==> build.log <==")
    expect(logs).to_contain_text("==> serve-")

    # Rolled back: the version that served before is started again and takes the traffic.
    view.get_by_role("button", name="Rollback").click()
    expect(page.locator(".jp-Dialog-body")).to_have_text(
        "Version 1 is started again and takes all the traffic once it is healthy; version 2 "
        "serves until then and is then retired.")
    confirm(page, "Roll back")

    expect(v1).to_have_attribute("data-state", "serving", timeout=SERVING_MS)
    expect(shares).to_have_text(["v1 100%"], timeout=REFRESH_MS)
    expect(v2).to_have_attribute("data-state", "retired")
    expect(v2.locator(".jp-himalia-version-reason")).to_have_text("replaced by version 1")
    assert predict(platform, CHURN, scientist.headers).headers["X-Himalia-Version"] == "1"

    view.get_by_role("button", name="Undeploy").click()
    confirm(page, "Undeploy")

    expect(panel.locator(f'.jp-himalia-deployment[data-name="{CHURN}"]')).to_have_count(0)
    expect(panel.locator(".jp-himalia-deployment-view")).to_have_count(0)
    assert predict(platform, CHURN, scientist.headers).status_code == 404


def test_a_colleagues_deployment_shared_with_you_shows_why_its_version_failed(
    colleagues_deployment: str, page: Page, lab: str, colleague: Person
) -> None:
    panel = open_sidebar(page, lab, PANEL)
    row = panel.locator(f'.jp-himalia-deployment[data-name="{colleagues_deployment}"]')
    expect(row.locator(".jp-himalia-deployment-summary")).to_contain_text(colleague.name)

    fraud = select(panel, colleagues_deployment)

    failed = fraud.locator('.jp-himalia-version[data-version="1"]')
    expect(failed).to_have_attribute("data-state", "failed", timeout=SERVING_MS)
    expect(failed.locator(".jp-himalia-version-state")).to_have_text("failed")
    reason = failed.locator(".jp-himalia-version-reason")
    expect(reason).to_contain_text("broken on purpose")
    expect(reason).to_have_class(re.compile(r"\bjp-himalia-error\b"))
    expect(fraud.locator(".jp-himalia-traffic")).to_have_attribute(
        "aria-label", "No version takes traffic")
    expect(row.locator(".jp-himalia-deployment-health")).to_have_text("down")
    expect(fraud.get_by_role("button", name="Promote")).to_be_disabled()
