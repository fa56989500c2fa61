"""A business viewer in real Chromium: logs in through the hub, finds the dashboard in the
gallery, opens it (a chart and a slider, from the latest run of a real job), moves the slider
and sees the kernel's answer; a new run of the job changes what the page shows."""

from __future__ import annotations

import json
import re

import nbformat
import pytest
from playwright.sync_api import expect

from himalia.sdk import Client, Jobs
from himalia_testing import Person, Platform, browser_log_in

pytestmark = pytest.mark.timeout(900)

JOB_PARAMETERS = "scale = 1"
JOB_BODY = ("from himalia.sdk import record\n"
            "record('sales', {'month': list(range(1, 13)), 'amount': [scale * m * 10 for m in range(1, 13)]})")
DASHBOARD = [
    "# Sales overview",
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


def notebook(cells: list[str], parameters: str | None = None) -> dict:
    nb = nbformat.v4.new_notebook()
    for source in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if source.startswith("# ")
                        else nbformat.v4.new_code_cell(source))
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


def test_a_viewer_opens_a_dashboard_and_moves_its_slider(platform, page):
    ann = Person(platform, "ann", "scientist")
    password = platform.create_user("vera", "viewer")
    jobs = Jobs(Client(f"{platform.url}/services/himalia/", ann.token))
    job = jobs.create("monthly-sales", notebook=notebook([JOB_BODY], parameters=JOB_PARAMETERS))
    first = jobs.run(job["id"], {"scale": 1})
    assert jobs.wait(first["id"], timeout=300)["state"] == "succeeded"
    ann.ok("POST", "/dashboards", 201, json={
        "name": "sales", "notebook": notebook(DASHBOARD), "job_id": job["id"],
        "description": "Monthly sales, refreshed nightly", "share": {"viewers": True}})

    browser_log_in(page, platform, "vera", password)
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
