"""The Runs panel in a real JupyterLab, driven in headless Chromium with Playwright.

A plain MLflow server holds runs tagged as himalia tags them (``himalia.user``,
``himalia.notebook``); JupyterLab runs with the tracking settings the hub gives every server.
Both run in their own process groups on free ports, every directory temporary. The labextension
is the one installed into the environment (``pip install -e .``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from himalia_testing import OFFLINE_LAB, jupyter_app
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Locator, Page, expect
from unit.test_tracking_handlers import MlflowServer, mlflow_tracking_server

pytestmark = pytest.mark.browser

NOTEBOOK = "analysis/churn.ipynb"
OTHER_NOTEBOOK = "other.ipynb"
LOSS_A = [1.0, 0.7, 0.5, 0.4, 0.35, 0.33]
PANEL = "#himalia-runs"


@dataclass
class Seeded:
    experiment: str
    a: str
    b: str
    other_notebook: str
    untagged: str


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_tracking_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="module")
def seeded(mlflow_server: MlflowServer) -> Seeded:
    """Two runs of the notebook (different learning rates), one of another notebook, and one
    logged without himalia's tags in ada's own experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment("users/ada")

    def run(name: str, notebook: str | None, params: dict, loss: list[float]) -> str:
        tags = {"himalia.user": "ada", "himalia.notebook": notebook} if notebook else {}
        run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for step, value in enumerate(loss):
            client.log_metric(run_id, "loss", value, step=step)
        client.set_terminated(run_id)
        return run_id

    return Seeded(
        experiment=experiment,
        a=run("baseline", NOTEBOOK, {"lr": "0.1", "depth": "3"}, LOSS_A),
        b=run("smaller-lr", NOTEBOOK, {"lr": "0.01", "depth": "3"}, [0.9, 0.6, 0.4, 0.3]),
        other_notebook=run("elsewhere", OTHER_NOTEBOOK, {"lr": "0.5"}, [2.0, 1.0]),
        untagged=run("plain-mlflow", None, {}, [3.0]),
    )


def write_notebook(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# churn"]}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }))


@pytest.fixture
def lab(tmp_path: Path, mlflow_server: MlflowServer, seeded: Seeded) -> Iterator[tuple[str, str]]:
    """JupyterLab as the hub starts it for ada; yields (base URL, token)."""
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "JUPYTERHUB_USER": "ada",
           "MLFLOW_EXPERIMENT_NAME": "users/ada", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with jupyter_app(tmp_path, "jupyterlab", OFFLINE_LAB, env) as app:
        write_notebook(tmp_path / "root" / NOTEBOOK)
        write_notebook(tmp_path / "root" / OTHER_NOTEBOOK)
        yield app.url, app.token


#: How long the panel may take to show its first runs.
FIRST_LOAD_MS = 30_000


def open_notebook(page: Page, base: str, token: str, path: str) -> None:
    page.goto(f"{base}lab/tree/{path}?token={token}")
    expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=60_000)


def open_runs_panel(page: Page) -> Locator:
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="himalia-runs"]').click()
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    return panel


def rows(panel: Locator) -> Locator:
    return panel.locator(".jp-himalia-run")


def test_runs_panel_lists_plots_and_compares_this_notebooks_runs(
    page: Page, lab: tuple[str, str], seeded: Seeded, mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    base, token = lab
    open_notebook(page, base, token, NOTEBOOK)
    panel = open_runs_panel(page)

    # This notebook's runs, newest first, and not another notebook's.
    expect(panel.locator(".jp-himalia-runs-context")).to_have_text(f"Runs of {NOTEBOOK}")
    # The panel's first answer waits for the server extension's first MLflow query (a cold
    # import of MLflow in a fresh environment).
    expect(rows(panel)).to_have_count(2, timeout=FIRST_LOAD_MS)
    assert [r.get_attribute("data-run-id") for r in rows(panel).all()] == [seeded.b, seeded.a]
    row_a = panel.locator(f'.jp-himalia-run[data-run-id="{seeded.a}"]')
    expect(row_a.locator(".jp-himalia-run-name")).to_have_text("baseline")
    expect(row_a.locator(".jp-himalia-run-status")).to_have_text("finished")
    expect(row_a.locator(".jp-himalia-run-metrics")).to_have_text(f"loss {LOSS_A[-1]}")
    link = row_a.get_by_role("link", name="Open in MLflow")
    expect(link).to_have_attribute(
        "href", f"{mlflow_server.url}/#/experiments/{seeded.experiment}/runs/{seeded.a}")
    expect(link).to_have_attribute("target", "_blank")
    expect(panel.get_by_role("button", name="Load more")).to_be_hidden()

    # All of mine: the other notebook's run and the untagged one in ada's experiment too.
    panel.get_by_role("button", name="All of mine").click()
    expect(rows(panel)).to_have_count(4)
    expect(panel.locator(f'[data-run-id="{seeded.untagged}"]')).to_be_visible()
    panel.get_by_role("button", name="This notebook").click()
    expect(rows(panel)).to_have_count(2)

    # One run selected: its metric curve, one point per logged step.
    row_a.locator(".jp-himalia-run-name").click()
    plot = panel.locator('.jp-himalia-curve[data-metric="loss"] svg')
    expect(plot).to_have_attribute("data-points", str(len(LOSS_A)))
    points = plot.locator("polyline").get_attribute("points")
    assert len(points.split()) == len(LOSS_A)
    expect(plot.locator("circle")).to_have_count(len(LOSS_A))
    page.screenshot(path=str(tmp_path / "runs-plot.png"))

    # Two runs checked: params side by side, the changed one highlighted.
    panel.get_by_role("checkbox", name="Select smaller-lr").check()
    compare = panel.locator(".jp-himalia-compare-params")
    expect(compare).to_be_visible()
    changed = compare.locator('tr[data-key="lr"]')
    same = compare.locator('tr[data-key="depth"]')
    expect(changed).to_have_attribute("data-diff", "changed")
    expect(changed).to_have_class(re.compile(r"\bjp-himalia-diff-changed\b"))
    expect(changed.locator("td")).to_have_text(["lr", "0.1", "0.01"])
    expect(same).to_have_attribute("data-diff", "same")

    def background(row: Locator) -> str:
        return row.evaluate("node => getComputedStyle(node).backgroundColor")

    assert background(changed) != background(same)
    metrics = panel.locator(".jp-himalia-compare-metrics tr[data-key='loss'] td")
    expect(metrics).to_have_text(["loss", str(LOSS_A[-1]), "0.3"])
    page.screenshot(path=str(tmp_path / "runs-compare.png"))


def test_runs_panel_follows_the_active_notebook(page: Page, lab: tuple[str, str],
                                                seeded: Seeded) -> None:
    base, token = lab
    open_notebook(page, base, token, NOTEBOOK)
    panel = open_runs_panel(page)
    expect(rows(panel)).to_have_count(2, timeout=FIRST_LOAD_MS)

    # Open the other notebook from the file browser, then come back to the panel.
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
    page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{OTHER_NOTEBOOK}$")).dblclick()
    current = page.locator(".jp-MainAreaWidget .lm-TabBar-tab.lm-mod-current, "
                           "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
    expect(current).to_have_text(OTHER_NOTEBOOK)
    open_runs_panel(page)

    expect(panel.locator(".jp-himalia-runs-context")).to_have_text(f"Runs of {OTHER_NOTEBOOK}")
    expect(rows(panel)).to_have_count(1)
    expect(panel.locator(f'[data-run-id="{seeded.other_notebook}"]')).to_be_visible()
