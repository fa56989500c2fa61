""""Publish as dashboard…" and the Dashboards panel in a real JupyterLab, against the real
platform.

``himalia up`` runs once for the module. A scientist owns a job (made through the platform API)
and a notebook among the files of a standalone JupyterLab that has the environment the hub gives
their server: its server extension calls the platform API with the scientist's token. A
colleague shares a dashboard of theirs with the scientist. Headless Chromium drives JupyterLab;
every process runs in its own process group on a free port, every directory temporary. Nothing
is faked: what is published, listed, shared and unpublished is the platform's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import nbformat
import pytest
from himalia_testing import Person, Platform
from playwright.sync_api import Locator, Page, expect
from ui.test_deployments_panel import (  # noqa: F401 - the fixture is used
    lab_prerequisites, open_sidebar)
from ui.test_features_panel import platform  # noqa: F401 - the fixture is used
from ui.test_labels_panel import lab_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PANEL = "#himalia-dashboards"
DIALOG = ".jp-himalia-publish"
NOTEBOOK = "Churn_report.ipynb"


def churn_notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Churn"),
                nbformat.v4.new_code_cell("print('churn is 4%')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


@pytest.fixture(scope="module")
def scientist(platform: Platform, unique_name_module) -> Person:
    return Person(platform, unique_name_module("dp"), "scientist")


@pytest.fixture(scope="module")
def colleague(platform: Platform, unique_name_module) -> Person:
    return Person(platform, unique_name_module("dc"), "scientist")


@pytest.fixture(scope="module")
def job(scientist: Person) -> dict:
    return scientist.ok("POST", "/jobs", 201, json={"name": "nightly-churn",
                                                    "notebook": churn_notebook()})


@pytest.fixture(scope="module")
def shared(colleague: Person, scientist: Person) -> dict:
    """A colleague's dashboard, shared with the scientist."""
    return colleague.ok("POST", "/dashboards", 201, json={
        "name": "sales-weekly", "title": "Sales this week", "notebook": churn_notebook(),
        "share": {"users": [scientist.name], "groups": [], "viewers": False}})


@pytest.fixture(scope="module")
def lab(platform: Platform, scientist: Person, shared: dict, job: dict,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("lab")
    with lab_for(platform, scientist, tmp) as app:
        (tmp / "root" / NOTEBOOK).write_text(json.dumps(churn_notebook()))
        yield f"{app.url}lab?token={app.token}"


def open_publish_dialog(page: Page, lab: str) -> Locator:
    """Load JupyterLab (its layout reset: the file browser shown), right-click the notebook,
    choose "Publish as dashboard…"."""
    page.goto(f"{lab}&reset")
    item = page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text=NOTEBOOK)
    item.click(button="right", timeout=60_000)
    page.get_by_role("menuitem", name="Publish as dashboard…").click()
    dialog = page.locator(DIALOG)
    expect(dialog).to_be_visible()
    return dialog


def test_publishing_from_the_file_browser_sends_the_saved_notebook_with_its_job_and_sharing(
    page: Page, lab: str, scientist: Person, job: dict, platform: Platform
) -> None:
    dialog = open_publish_dialog(page, lab)
    expect(dialog.locator(".jp-himalia-schedule-path")).to_have_text(NOTEBOOK)
    name = dialog.get_by_label("Dashboard name")
    expect(name).to_have_value("churn-report")
    expect(dialog.get_by_label("Title")).to_have_value("Churn report")

    name.fill("Churn Report")
    dialog.get_by_role("button", name="Publish").click()
    expect(dialog.locator(".jp-himalia-field-error")).to_contain_text("lowercase letters")

    name.fill("churn")
    dialog.get_by_label("Title").fill("Churn this week")
    dialog.get_by_label("Job").select_option(str(job["id"]))
    dialog.get_by_label("Share with groups").fill("sales, finance")
    dialog.get_by_label("Everyone with the viewer role").check()
    dialog.get_by_role("button", name="Publish").click()

    expect(page.locator(DIALOG)).to_have_count(0)
    published = scientist.ok("GET", "/dashboards/churn")
    assert published["title"] == "Churn this week" and published["version"] == 1
    assert published["job_id"] == job["id"]
    assert published["share"]["users"] == [] and published["share"]["viewers"] is True
    assert sorted(published["share"]["groups"]) == ["finance", "sales"]
    assert published["owner"] == scientist.name

    # The panel opens on it.
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    row = panel.locator('.jp-himalia-dashboard[data-name="churn"]')
    expect(row.locator(".jp-himalia-dashboard-open")).to_have_text("Churn this week")
    expect(row.locator(".jp-himalia-dashboard-open")).to_have_attribute("href", published["url"])
    expect(row.locator(".jp-himalia-dashboard-open")).to_have_attribute("target", "_blank")
    expect(row.locator(".jp-himalia-dashboard-version")).to_have_text("v1")
    expect(row.locator(".jp-himalia-dashboard-owner")).to_have_text("yours")
    expect(row.locator(".jp-himalia-dashboard-freshness")).to_have_text("no data yet")
    expect(row.locator(".jp-himalia-dashboard-audience")).to_have_text(
        "Shared with all viewers; groups " + ", ".join(published["share"]["groups"]))

    # Publishing the same name again makes its next version.
    dialog = open_publish_dialog(page, lab)
    dialog.get_by_label("Dashboard name").fill("churn")
    dialog.get_by_role("button", name="Publish").click()
    expect(page.locator(DIALOG)).to_have_count(0)
    expect(page.locator(PANEL).locator(
        '.jp-himalia-dashboard[data-name="churn"] .jp-himalia-dashboard-version')).to_have_text("v2")
    versions = scientist.ok("GET", "/dashboards/churn/versions")["versions"]
    assert sorted(v["version"] for v in versions) == [1, 2]


def test_the_panel_lists_own_and_shared_dashboards_and_the_owner_shares_and_unpublishes(
    page: Page, lab: str, scientist: Person, colleague: Person, shared: dict
) -> None:
    scientist.ok("POST", "/dashboards", 201, json={"name": "retention", "title": "Retention",
                                                   "notebook": churn_notebook()})
    panel = open_sidebar(page, lab, PANEL)

    theirs = panel.locator('.jp-himalia-dashboard[data-name="sales-weekly"]')
    expect(theirs.locator(".jp-himalia-dashboard-open")).to_have_text("Sales this week")
    expect(theirs.locator(".jp-himalia-dashboard-owner")).to_have_text(f"by {colleague.name}")
    expect(theirs.locator(".jp-himalia-dashboard-views")).to_have_text("0 views")
    expect(theirs.get_by_role("button", name="Unpublish")).to_be_hidden()
    expect(theirs.get_by_role("button", name="Share…")).to_be_hidden()

    mine = panel.locator('.jp-himalia-dashboard[data-name="retention"]')
    expect(mine.locator(".jp-himalia-dashboard-audience")).to_have_text("Not shared")
    expect(mine.locator(".jp-himalia-dashboard-freshness")).to_be_hidden()

    mine.get_by_role("button", name="Share…").click()
    mine.get_by_label("Users").fill(colleague.name)
    mine.get_by_label("Everyone with the viewer role").check()
    mine.get_by_role("button", name="Save").click()
    expect(mine.locator(".jp-himalia-dashboard-audience")).to_have_text(
        f"Shared with all viewers; {colleague.name}")
    assert scientist.ok("GET", "/dashboards/retention")["share"] == {
        "users": [colleague.name], "groups": [], "viewers": True}

    mine.get_by_role("button", name="Unpublish").click()
    confirm = page.locator(".jp-Dialog").filter(has_text="Unpublish “Retention”?")
    confirm.get_by_role("button", name="Unpublish").click()
    expect(mine).to_have_count(0)
    assert scientist.call("GET", "/dashboards/retention").status_code == 404
    expect(theirs).to_be_visible()
