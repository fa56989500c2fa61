"""The Features panel in a real JupyterLab, against the real platform.

``himalia up`` runs once for the module. A scientist starts their server once (it makes their
Unix account and home), and a Parquet file of ride statistics is put among their files; the
SDK in this process, with the scientist's token, applies an Entity and a FeatureView over it
(its statistics go to the catalog) and materializes it once. JupyterLab runs standalone with
the environment the hub gives a server: its server extension calls the platform API with the
token of the person it runs for, a scientist's or a viewer's. Headless Chromium drives
JupyterLab; every process runs in its own process group on a free port, every directory
temporary. Nothing is faked: statistics, histograms and freshness are the platform's.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from himalia_testing import OFFLINE_LAB, Person, Platform, jupyter_app
from playwright.sync_api import Locator, Page, expect
from ui.test_deployments_panel import (  # noqa: F401 - the fixture is used
    lab_prerequisites, open_sidebar)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PANEL = "#himalia-features"
VIEW = "ride_stats"
DESCRIPTION = "Trips and fares of drivers, for the surge pricing model"
ENTITY = "driver"
DRIVERS = 40
ROWS = 400
#: The newest ride happened this long before the test: "latest event 3 days ago".
AGE = timedelta(days=3, hours=2)


@dataclass
class Scientist:
    """A scientist with a Unix home (their server started once) and a hub token."""

    person: Person
    home: Path

    @property
    def name(self) -> str:
        return self.person.name


@pytest.fixture(scope="module")
def platform(proxy_bin: Path) -> Iterator[Platform]:
    p = Platform(None, proxy_bin)
    p.write_config()
    try:
        p.start(timeout=180)
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def scientist(platform: Platform, unique_name_module) -> Scientist:
    name = unique_name_module("fp")
    session = platform.login(name, platform.create_user(name, role="scientist"))
    platform.spawn(session)
    token = platform.user_token(session, note="Features panel tests")["token"]
    home = Path(pwd.getpwnam(platform.user_prefix + name).pw_dir)
    return Scientist(Person(platform, name, token=token), home)


@pytest.fixture(scope="module")
def viewer(platform: Platform, unique_name_module) -> Person:
    return Person(platform, unique_name_module("fv"), "viewer")


def ride_rows(now: pd.Timestamp) -> pd.DataFrame:
    """Rides of every driver over the last few weeks, the newest :data:`AGE` ago."""
    rng = np.random.default_rng(7)
    newest = now - pd.Timedelta(AGE)
    hours = rng.integers(0, 20 * 24, ROWS)
    hours[0] = 0
    return pd.DataFrame({
        "driver_id": (np.arange(ROWS) % DRIVERS).astype("int64"),
        "event_timestamp": newest - pd.to_timedelta(hours, unit="h"),
        "avg_fare": rng.normal(20, 5, ROWS).clip(5, 40).round(1),
        "trips": rng.integers(0, 60, ROWS).astype("int64"),
        "city": rng.choice(["oslo", "lima", "pune"], ROWS),
    })


@pytest.fixture(scope="module")
def applied(platform: Platform, scientist: Scientist) -> dict:
    """``ride_stats`` applied and materialized once by the scientist; its detail as the
    platform API answers it."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    from himalia.sdk import Client
    from himalia.sdk.features import Features

    path = scientist.home / "rides.parquet"
    ride_rows(pd.Timestamp.now(tz="UTC")).to_parquet(path, index=False)
    home = scientist.home.stat()
    os.chown(path, home.st_uid, home.st_gid)

    driver = Entity(name=ENTITY, join_keys=["driver_id"], value_type=ValueType.INT64,
                    description="A driver of the fleet")
    source = FileSource(name="rides", path=str(path), timestamp_field="event_timestamp")
    view = FeatureView(
        name=VIEW, entities=[driver], ttl=timedelta(days=30), source=source,
        description=DESCRIPTION, tags={"team": "pricing"},
        schema=[Field(name="avg_fare", dtype=Float64), Field(name="trips", dtype=Int64),
                Field(name="city", dtype=String)])
    features = Features(Client(f"{platform.url}/services/himalia/", scientist.person.token))
    features.apply([driver, view])
    [done] = features.materialize(views=[VIEW], progress=False)
    assert done["state"] == "succeeded" and done["rows"] == DRIVERS, done
    return {"features": features, "detail": scientist.person.ok("GET", f"/features/views/{VIEW}")}


def lab_for(platform: Platform, person: Person, tmp: Path):
    """JupyterLab with the environment the hub gives ``person``'s server."""
    env = {
        "HIMALIA_API_URL": f"{platform.url}/services/himalia/",
        "JUPYTERHUB_API_TOKEN": person.token,
        "JUPYTERHUB_USER": person.name,
    }
    return jupyter_app(tmp, "jupyterlab", OFFLINE_LAB, env)


@pytest.fixture(scope="module")
def lab(platform: Platform, scientist: Scientist, applied: dict,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lab_for(platform, scientist.person, tmp_path_factory.mktemp("lab")) as app:
        yield f"{app.url}lab?token={app.token}"


def open_panel(page: Page, lab: str) -> Locator:
    """Load JupyterLab (its layout reset) and show the Features panel."""
    return open_sidebar(page, lab, PANEL)


def shown_number(value: float) -> str:
    """A statistic as the panel writes it: four significant digits."""
    return f"{float(f'{value:.4g}'):g}"


def test_the_catalog_lists_the_view_with_its_owner_and_freshness_and_search_narrows_it(
    page: Page, lab: str, scientist: Scientist
) -> None:
    panel = open_panel(page, lab)

    row = panel.locator(f'.jp-himalia-feature-view[data-name="{VIEW}"]')
    expect(row.locator(".jp-himalia-feature-view-owner")).to_have_text(scientist.name)
    expect(row.locator(".jp-himalia-feature-view-summary")).to_have_text(
        f"{ENTITY} · 3 features · {ROWS} rows")
    freshness = row.locator(".jp-himalia-feature-view-freshness")
    expect(freshness).to_contain_text("latest event 3 days ago")
    expect(freshness).to_contain_text("online through ")
    expect(panel.locator(f'.jp-himalia-entity[data-name="{ENTITY}"]')).to_contain_text("driver_id")

    search = panel.get_by_label("Search feature views")
    views = panel.get_by_role("list", name="Feature views")
    search.fill("surge")
    expect(views).to_have_attribute("data-query", "surge")
    expect(views.locator(".jp-himalia-feature-view")).to_have_count(1)
    expect(row).to_be_visible()

    search.fill("zebra-quasar")
    expect(views).to_have_attribute("data-query", "zebra-quasar")
    expect(views.locator(".jp-himalia-feature-view")).to_have_count(0)
    expect(panel.locator(".jp-himalia-state")).to_have_text(
        "No feature view matches “zebra-quasar”.")

    search.fill("")
    expect(row).to_be_visible()
    expect(panel.locator(".jp-himalia-state")).to_be_hidden()


def test_a_view_shows_its_statistics_histograms_freshness_and_materializations(
    page: Page, lab: str, scientist: Scientist, applied: dict, tmp_path: Path
) -> None:
    detail = applied["detail"]
    panel = open_panel(page, lab)

    panel.locator(f'.jp-himalia-feature-view[data-name="{VIEW}"] .jp-himalia-feature-view-name'
                  ).click()

    view = panel.locator(f'.jp-himalia-feature-view-detail[data-name="{VIEW}"]')
    expect(view.locator(".jp-himalia-feature-description")).to_have_text(DESCRIPTION)
    expect(view.locator('.jp-himalia-feature-tag[data-tag="team"]')).to_have_text("team: pricing")
    expect(view).to_contain_text(str(scientist.home / "rides.parquet"))
    expect(view).to_contain_text("30 days")

    fares = detail["statistics"]["avg_fare"]
    cells = view.locator('.jp-himalia-feature-stats tr[data-feature="avg_fare"] td')
    expect(cells).to_have_text(["avg_fare", str(ROWS), "0", str(fares["distinct"]),
                                shown_number(fares["mean"]), shown_number(fares["std"]),
                                shown_number(fares["min"]), shown_number(fares["max"])])
    city = view.locator('.jp-himalia-feature-stats tr[data-feature="city"] td')
    expect(city).to_have_text(["city", str(ROWS), "0", "3", "—", "—", "—", "—"])

    counts = fares["histogram"]["counts"]
    assert sum(counts) == ROWS and len(counts) > 2
    bars = view.locator('.jp-himalia-feature-histogram[data-feature="avg_fare"] '
                        'rect.jp-himalia-histogram-bar')
    expect(bars).to_have_count(len(counts))
    assert [int(c) for c in bars.evaluate_all("bars => bars.map(b => b.dataset.count)")] == counts
    heights = [float(h) for h in bars.evaluate_all(
        "bars => bars.map(b => b.getAttribute('height'))")]
    tallest = max(heights)
    for count, height in zip(counts, heights):
        assert height == pytest.approx(tallest * count / max(counts), abs=0.11)
    expect(view.locator('.jp-himalia-feature-histogram[data-feature="trips"] rect'
                        '.jp-himalia-histogram-bar')).to_have_count(
        len(detail["statistics"]["trips"]["histogram"]["counts"]))
    expect(view.locator('.jp-himalia-feature-histogram[data-feature="city"]')).to_have_count(0)

    expect(view.locator(".jp-himalia-feature-freshness")).to_have_text(
        re.compile(r"^latest event 3 days ago · online through \S"))
    loads = view.locator(".jp-himalia-materialization")
    expect(loads).to_have_count(1)
    expect(loads.first).to_have_attribute("data-state", "succeeded")
    expect(loads.first.locator(".jp-himalia-materialization-rows")).to_have_text(f"{DRIVERS} rows")
    panel.screenshot(path=str(tmp_path / "features-view.png"))

    # Another load, then Refresh: the history shows it, newest first.
    applied["features"].materialize(views=[VIEW], progress=False)
    panel.get_by_role("button", name="Refresh").click()
    expect(loads).to_have_count(2)
    expect(loads.first.locator(".jp-himalia-materialization-rows")).to_have_text("0 rows")


def test_a_viewer_sees_the_platforms_refusal_not_a_blank_panel(
    page: Page, platform: Platform, viewer: Person, applied: dict,
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    refusal = viewer.call("GET", "/features")
    assert refusal.status_code == 403

    with lab_for(platform, viewer, tmp_path_factory.mktemp("viewer-lab")) as app:
        panel = open_panel(page, f"{app.url}lab?token={app.token}")

        error = panel.locator(".jp-himalia-state.jp-himalia-error")
        expect(error).to_have_text(refusal.json()["message"])
        expect(error).to_contain_text("scientist")
        expect(panel.locator(".jp-himalia-feature-view")).to_have_count(0)
        expect(panel.get_by_role("list", name="Entities")).to_be_hidden()
