"""The Dask panel in a real JupyterLab, against the real platform.

``himalia up`` runs once for the module (its real dask-gateway). A scientist starts a Dask
cluster through the SDK with their hub token; a standalone JupyterLab with the environment the
hub gives their server lists it in the Dask panel, and the panel's dashboard link opens the
cluster's Dask dashboard through the hub in headless Chromium, logged in to the hub as that
scientist. Nothing is faked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from himalia_testing import Person, Platform
from playwright.sync_api import Page, expect
from ui.test_deployments_panel import (  # noqa: F401 - the fixture is used
    lab_prerequisites, open_sidebar)
from ui.test_features_panel import platform  # noqa: F401 - the fixture is used
from ui.test_labels_panel import lab_for

from himalia.sdk.clusters import Clusters

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PANEL = "#himalia-clusters"


@pytest.fixture(scope="module")
def account(platform: Platform, unique_name_module) -> tuple[Person, str]:
    """A scientist who can log in to the hub (name, password) and holds a hub token."""
    name = unique_name_module("kp")
    password = platform.create_user(name, role="scientist")
    session = platform.login(name, password)
    token = platform.user_token(session, note="Dask panel tests")["token"]
    return Person(platform, name, token=token), password


@pytest.fixture(scope="module")
def cluster(platform: Platform, account: tuple[Person, str]) -> Iterator[str]:
    person, _ = account
    started = Clusters(f"{platform.url}/services/dask-gateway", person.token).start(workers=1)
    try:
        yield started.name
    finally:
        started.shutdown()


@pytest.fixture(scope="module")
def lab(platform: Platform, account: tuple[Person, str], cluster: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    person, _ = account
    with lab_for(platform, person, tmp_path_factory.mktemp("lab")) as app:
        yield f"{app.url}lab?token={app.token}"


def test_the_panel_lists_the_cluster_and_its_dashboard_opens_through_the_hub(
    page: Page, lab: str, platform: Platform, account: tuple[Person, str], cluster: str
) -> None:
    person, password = account
    panel = open_sidebar(page, lab, PANEL)
    row = panel.locator(f'.jp-himalia-cluster[data-name="{cluster}"]')
    expect(row.locator(".jp-himalia-cluster-name")).to_have_text(cluster, timeout=60_000)
    expect(row).to_have_attribute("data-status", "running")
    expect(row.locator(".jp-himalia-cluster-facts")).to_contain_text("profile cpu · 1 worker")
    link = row.locator(".jp-himalia-cluster-dashboard")
    dashboard = f"{platform.url}/services/dask-gateway/clusters/{cluster}/status"
    expect(link).to_have_attribute("href", dashboard)
    expect(link).to_have_attribute("target", "_blank")

    # Logged in to the hub as the scientist, the link opens the Dask dashboard (the gateway's
    # front lets the owner in by the hub's OAuth).
    hub = page.context.new_page()
    hub.goto(f"{platform.url}/hub/login")
    hub.locator("input[name=username]").fill(person.name)
    hub.locator("input[name=password]").fill(password)
    hub.locator("input[type=submit], button[type=submit]").first.click()
    hub.wait_for_url(re.compile(r".*/hub/(home|spawn|user).*"), timeout=60_000)
    hub.close()
    with page.context.expect_page() as opened:
        link.click()
    tab = opened.value
    tab.wait_for_load_state()
    expect(tab).to_have_url(dashboard, timeout=60_000)
    expect(tab).to_have_title(re.compile("Dask"), timeout=60_000)
