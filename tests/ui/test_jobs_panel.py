"""The Schedule dialog and the Jobs panel in a real JupyterLab, against the real platform.

``himalia up`` runs once for the module (its job runner executes the notebooks); JupyterLab runs
standalone, its server extension talking to the platform API with a scientist's token, as a
hub-spawned server would with its own. Both run in their own process groups on free ports,
every directory temporary; headless Chromium drives JupyterLab in the time zone Europe/Paris.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from himalia_testing import OFFLINE_LAB, Platform, jupyter_app
from jupyter_core.paths import jupyter_path
from playwright.sync_api import Browser, Locator, Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

API = "/services/himalia/api/v1"
SCOPES = ["access:services!service=himalia", "read:users:name!user", "read:users:groups!user",
          "read:roles:users!user"]
NOTEBOOK = "report.ipynb"
BROWSER_ZONE = "Europe/Paris"
PANEL = "#himalia-jobs"
DIALOG = ".jp-himalia-schedule"
#: A run takes a few seconds: long enough to be seen running, cell by cell.
CELLS = ["import time\ntime.sleep(4)", "print(f'n is {n}')"]


@dataclass
class Scientist:
    name: str
    token: str


@pytest.fixture(scope="module", autouse=True)
def lab_prerequisites() -> None:
    installed = [Path(p, "himalia", "package.json") for p in jupyter_path("labextensions")]
    if not any(p.exists() for p in installed):
        pytest.fail("the himalia labextension is not installed: run `pip install -e .`")


@pytest.fixture(scope="module")
def platform(proxy_bin: Path) -> Iterator[Platform]:
    p = Platform(None, proxy_bin)
    try:
        p.start()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def scientist(platform: Platform, unique_name_module) -> Scientist:
    name = unique_name_module("jp")
    assert platform.api("POST", f"/users/{name}").status_code == 201
    platform.set_role(name, "scientist")
    r = platform.api("POST", f"/users/{name}/tokens",
                     json={"note": "Jobs panel tests", "scopes": SCOPES})
    assert r.status_code == 201, r.text
    return Scientist(name, r.json()["token"])


def parameterised_notebook() -> str:
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("n = 3")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Report"), parameters,
                *(nbformat.v4.new_code_cell(source) for source in CELLS)]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)",
                                 "language": "python"}
    return nbformat.writes(nb)


@pytest.fixture(scope="module")
def lab(platform: Platform, scientist: Scientist,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab whose server extension calls the platform API as the scientist; yields the
    ``/lab?token=`` URL."""
    tmp = tmp_path_factory.mktemp("lab")
    api_url = f"{platform.url}/services/himalia/"
    config = OFFLINE_LAB + (
        "from himalia.sdk import Client\n"
        f"c.HimaliaExtensionApp.client_factory = lambda: Client({api_url!r}, "
        f"{scientist.token!r})\n")
    with jupyter_app(tmp, "jupyterlab", config) as app:
        (tmp / "root" / NOTEBOOK).write_text(parameterised_notebook())
        yield f"{app.url}lab?token={app.token}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  timezone_id=BROWSER_ZONE)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def jobs_of(platform: Platform, scientist: Scientist) -> list[dict]:
    import requests

    r = requests.get(f"{platform.url}{API}/jobs", timeout=30,
                     headers={"Authorization": f"token {scientist.token}"})
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def open_schedule_dialog(page: Page, lab: str) -> Locator:
    """Load JupyterLab (its layout reset: the file browser shown), right-click the notebook in
    the file browser, choose "Schedule…"."""
    page.goto(f"{lab}&reset")
    item = page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text=NOTEBOOK)
    item.click(button="right", timeout=60_000)
    page.get_by_role("menuitem", name="Schedule…").click()
    dialog = page.locator(DIALOG)
    expect(dialog).to_be_visible()
    return dialog


def test_a_notebook_scheduled_with_a_new_parameter_runs_once_and_shows_its_output(
    page: Page, lab: str, platform: Platform, scientist: Scientist
) -> None:
    dialog = open_schedule_dialog(page, lab)
    expect(dialog.locator(".jp-himalia-schedule-path")).to_have_text(NOTEBOOK)
    expect(dialog.get_by_label("Job name")).to_have_value("report")
    n = dialog.locator('[data-parameter="n"]')
    expect(n).to_have_attribute("data-type", "int")
    expect(n.locator("input")).to_have_value("3")
    expect(n.locator("input")).to_have_attribute("type", "number")

    n.locator("input").fill("7")
    dialog.get_by_role("button", name="Schedule").click()

    expect(page.locator(DIALOG)).to_have_count(0)
    [job] = jobs_of(platform, scientist)
    assert job["name"] == "report" and job["schedule"] is None
    assert job["parameters"]["n"]["default"] == 7
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    row = panel.locator(f'.jp-himalia-job[data-job-id="{job["id"]}"]')
    expect(row.locator(".jp-himalia-job-name")).to_have_text("report")
    expect(row.locator(".jp-himalia-job-schedule")).to_have_text("Runs when started")
    run = row.locator(".jp-himalia-job-run")
    expect(run).to_have_count(1)
    expect(run.locator(".jp-himalia-run-trigger")).to_have_text("manual")

    # Followed live: running, cell by cell, then done.
    expect(run).to_have_attribute("data-state", "running", timeout=120_000)
    expect(run.locator(".jp-himalia-run-cells")).to_have_text(re.compile(r"^\d+ / \d+ cells$"))
    expect(run.get_by_role("button", name="Cancel")).to_be_visible()
    expect(run).to_have_attribute("data-state", "succeeded", timeout=120_000)
    expect(run.locator(".jp-himalia-run-state")).to_have_text("succeeded")
    expect(run.locator(".jp-himalia-run-progress")).to_be_hidden()
    expect(run.locator(".jp-himalia-run-duration")).to_contain_text(" s")
    expect(run.get_by_role("button", name="Cancel")).to_be_hidden()
    output = run.get_by_role("button", name="Output")
    expect(output).to_be_enabled(timeout=60_000)
    # Nothing left to follow: the panel stops asking.
    expect(panel).to_have_attribute("data-polling", "false")

    output.click()

    frame = page.locator(".jp-himalia-job-output iframe")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator(".jp-himalia-job-output iframe").locator("body")).to_contain_text(
        "n is 7")


def test_the_cron_preview_shows_the_apis_message_or_the_next_times_in_the_chosen_zone(
    page: Page, lab: str, platform: Platform, scientist: Scientist
) -> None:
    before = len(jobs_of(platform, scientist))
    dialog = open_schedule_dialog(page, lab)
    zone = dialog.get_by_label("Time zone")
    cron = dialog.get_by_label("Schedule (cron)")
    preview = dialog.locator(".jp-himalia-cron-preview")
    expect(zone).to_have_value(BROWSER_ZONE)
    expect(preview).to_contain_text("No schedule")

    cron.fill("every day")

    expect(preview).to_have_class("jp-himalia-cron-preview jp-himalia-error")
    expect(preview).to_contain_text("schedule: 'every day' is not a cron expression")

    cron.fill("0 2 * * *")
    zone.select_option("Asia/Tokyo")

    times = preview.locator("li time")
    expect(times).to_have_count(5)
    expect(preview).not_to_have_class("jp-himalia-cron-preview jp-himalia-error")
    expect(preview).to_contain_text("Next runs (Asia/Tokyo)")
    for time in times.all():
        expect(time).to_have_attribute("datetime", re.compile(r"T02:00:00\+09:00$"))
        expect(time).to_contain_text("02:00")

    # A value that is not of the parameter's type is refused before anything is sent.
    dialog.locator('[data-parameter="n"] input').fill("2.5")
    dialog.get_by_role("button", name="Schedule").click()
    expect(dialog.locator('[data-parameter="n"] .jp-himalia-field-error')).to_have_text(
        "Give a whole number.")
    expect(dialog).to_be_visible()

    dialog.get_by_role("button", name="Cancel").click()

    expect(page.locator(DIALOG)).to_have_count(0)
    assert len(jobs_of(platform, scientist)) == before


def test_the_notebook_toolbar_saves_the_open_notebook_and_schedules_it_as_edited(
    page: Page, lab: str
) -> None:
    base, query = lab.split("lab?", 1)
    page.goto(f"{base}lab/tree/{NOTEBOOK}?{query}&reset")
    notebook = page.locator(".jp-NotebookPanel")
    expect(notebook).to_be_visible(timeout=60_000)
    parameters = notebook.locator(".jp-Cell").nth(1).locator(".cm-content")
    expect(parameters).to_have_text("n = 3")
    parameters.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("n = 5")
    schedule = notebook.locator(".jp-NotebookPanel-toolbar").get_by_title(
        "Schedule this notebook as a job")

    schedule.click()

    dialog = page.locator(DIALOG)
    expect(dialog.locator(".jp-himalia-schedule-path")).to_have_text(NOTEBOOK)
    # Unsaved changes were saved first: the job would run the notebook as it is on screen.
    expect(dialog.locator('[data-parameter="n"] input')).to_have_value("5")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.locator(DIALOG)).to_have_count(0)
