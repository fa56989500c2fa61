"""The Labels panel in a real JupyterLab, against the real platform.

``himalia up`` runs once for the module. A scientist owns a label set of reviews (two labels per
item) shared with a labeler; both label some reviews through the platform API, disagreeing on
two. A colleague shares a set of theirs with the scientist. JupyterLab runs standalone with the
environment the hub gives the scientist's server (and the hub's prefix and host in its page
config, as under the hub): its server extension passes the panel's calls through to the platform
API with the scientist's token. Headless Chromium drives JupyterLab; every process runs in its
own process group on a free port, every directory temporary. Nothing is faked: progress,
kappa, confusion, conflicts and snapshots are the platform's, as in the Features panel's tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from himalia_testing import (OFFLINE_LAB, STRONG, Person, Platform, browser_log_in,
                             jupyter_app)
from playwright.sync_api import Locator, Page, expect
from ui.test_deployments_panel import (  # noqa: F401 - the fixture is used
    lab_prerequisites, open_sidebar)
from ui.test_features_panel import platform  # noqa: F401 - the fixture is used

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PANEL = "#himalia-labels"
CLASSES = ["pos", "neg", "neutral"]
REVIEWS = {"r1": "Loved it", "r2": "Meh, it broke", "r3": "Works great", "r4": "It is a phone",
           "r5": "Five stars", "r6": "Returned it"}
#: Each person's labels of the reviews: they disagree on r2 and r4.
OWNERS_LABELS = {"r1": "pos", "r2": "neg", "r3": "pos", "r4": "neutral"}
LABELERS_LABELS = {"r1": "pos", "r2": "pos", "r3": "pos", "r4": "neg"}
#: The panel asks for the progress again every 10 s while it is shown.
POLL_MS = 25_000


@pytest.fixture(scope="module")
def owner(platform: Platform, unique_name_module) -> Person:
    """A scientist who can also log in to the hub in the browser."""
    name = unique_name_module("lo")
    session = platform.login(name, platform.create_user(name, role="scientist"))
    return Person(platform, name, token=platform.user_token(session, note="Labels panel")["token"])


@pytest.fixture(scope="module")
def labeler(platform: Platform, unique_name_module) -> Person:
    return Person(platform, unique_name_module("ll"), "labeler")


@pytest.fixture(scope="module")
def colleague(platform: Platform, unique_name_module) -> Person:
    return Person(platform, unique_name_module("lc"), "scientist")


def label(person: Person, set_id: int, labels: dict[str, str]) -> None:
    for item, value in labels.items():
        person.ok("POST", f"/labelsets/{set_id}/annotations", 201,
                  json={"item_id": item, "label": value})


@pytest.fixture(scope="module")
def reviews(owner: Person, labeler: Person) -> dict:
    """The owner's set of reviews, shared with the labeler, labeled by both."""
    labelset = owner.ok("POST", "/labelsets", 201, json={
        "name": "reviews", "classes": CLASSES, "k": 2, "instructions": "The reviewer's mood.",
        "share": {"users": [labeler.name]}})
    owner.ok("POST", f"/labelsets/{labelset['id']}/items", 201,
             json=[{"id": key, "text": text} for key, text in REVIEWS.items()])
    label(owner, labelset["id"], OWNERS_LABELS)
    label(labeler, labelset["id"], LABELERS_LABELS)
    return labelset


@pytest.fixture(scope="module")
def cats(colleague: Person, owner: Person) -> dict:
    """A colleague's set, shared with the owner."""
    return colleague.ok("POST", "/labelsets", 201, json={
        "name": "cats", "classes": ["cat", "dog"], "share": {"users": [owner.name]}})


@pytest.fixture(scope="module")
def lab(platform: Platform, owner: Person, reviews: dict, cats: dict,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with lab_for(platform, owner, tmp_path_factory.mktemp("lab")) as app:
        yield f"{app.url}lab?token={app.token}"


def lab_for(platform: Platform, person: Person, tmp: Path):
    """JupyterLab with the environment the hub gives ``person``'s server, and the hub's
    whereabouts in its page config."""
    env = {
        "HIMALIA_API_URL": f"{platform.url}/services/himalia/",
        "JUPYTERHUB_API_TOKEN": person.token,
        "JUPYTERHUB_USER": person.name,
    }
    hub = {"page_config_data": {"hubPrefix": "/hub/", "hubHost": platform.url}}
    return jupyter_app(tmp, "jupyterlab", OFFLINE_LAB + f"c.ServerApp.tornado_settings = {hub!r}\n",
                       env)


def select(panel: Locator, labelset: dict) -> Locator:
    """Click a label set in the list; its detail."""
    panel.locator(f'.jp-himalia-labels-set[data-id="{labelset["id"]}"] .jp-himalia-labels-name'
                  ).click()
    view = panel.locator(f'.jp-himalia-labels-view[data-id="{labelset["id"]}"]')
    expect(view).to_be_visible()
    return view


def test_the_list_shows_own_and_shared_sets_with_their_progress_as_it_grows(
    page: Page, lab: str, owner: Person, labeler: Person, reviews: dict, cats: dict,
    colleague: Person
) -> None:
    panel = open_sidebar(page, lab, PANEL)

    row = panel.locator(f'.jp-himalia-labels-set[data-id="{reviews["id"]}"]')
    expect(row.locator(".jp-himalia-labels-owner")).to_have_text("yours")
    expect(row.locator(".jp-himalia-labels-done")).to_have_text("4 / 6 done")
    bar = row.get_by_label("Progress of reviews")
    expect(bar).to_have_attribute("max", "6")
    expect(bar).to_have_js_property("value", 4)
    expect(row.locator(".jp-himalia-labels-summary")).to_have_text(
        "8 labels · 2 per item · 2 for you")
    shared = panel.locator(f'.jp-himalia-labels-set[data-id="{cats["id"]}"]')
    expect(shared.locator(".jp-himalia-labels-owner")).to_have_text(f"shared by {colleague.name}")
    expect(shared.locator(".jp-himalia-labels-done")).to_have_text("0 / 0 done")

    # Both label r5 elsewhere: the panel, still shown, catches up on its own.
    expect(panel).to_have_attribute("data-polling", "true")
    label(owner, reviews["id"], {"r5": "pos"})
    label(labeler, reviews["id"], {"r5": "pos"})
    expect(row.locator(".jp-himalia-labels-done")).to_have_text("5 / 6 done", timeout=POLL_MS)
    expect(bar).to_have_js_property("value", 5)


def test_a_set_of_ones_own_shows_annotators_agreement_and_confusion_as_the_platform_measures(
    page: Page, lab: str, owner: Person, labeler: Person, reviews: dict, tmp_path: Path
) -> None:
    agreement = owner.ok("GET", f"/labelsets/{reviews['id']}/agreement")
    progress = owner.ok("GET", f"/labelsets/{reviews['id']}")["progress"]
    assert agreement["method"] == "cohen" and agreement["kappa"] is not None
    panel = open_sidebar(page, lab, PANEL)

    view = select(panel, reviews)

    expect(view).to_contain_text("The reviewer's mood.")
    expect(view.locator(".jp-himalia-field", has_text="Shared")).to_contain_text(labeler.name)
    annotators = view.get_by_role("table", name="Labels per annotator")
    for person in (owner, labeler):
        cells = annotators.locator(f'tr[data-user="{person.name}"] td')
        expect(cells.nth(1)).to_have_text(str(progress["annotators"][person.name]))
    kappa = view.locator(".jp-himalia-labels-kappa")
    expect(kappa).to_have_attribute("data-method", "cohen")
    expect(kappa.locator(".jp-himalia-labels-kappa-value")).to_have_text(
        f"{agreement['kappa']:.2f}")
    expect(kappa).to_contain_text(f"over {agreement['items']} items, 2 annotators")
    per_class = view.get_by_role("table", name="Kappa per class")
    for cls, value in agreement["per_class"].items():
        expect(per_class.locator(f'tr[data-class="{cls}"] td').nth(1)).to_have_text(
            "—" if value is None else f"{value:.2f}")
    confusion = view.get_by_role("table", name="Confusion matrix")
    first, second = agreement["annotators"]
    expect(confusion.locator("caption")).to_have_text(
        f"Rows: {first}'s labels; columns: {second}'s")
    for cls, counts in zip(agreement["confusion"]["classes"], agreement["confusion"]["matrix"]):
        expect(confusion.locator(f'tr[data-class="{cls}"] td')).to_have_text(
            [str(c) for c in counts])
    panel.screenshot(path=str(tmp_path / "labels-set.png"))


def test_the_owner_adjudicates_a_conflict_and_takes_snapshots(
    page: Page, lab: str, owner: Person, labeler: Person, reviews: dict
) -> None:
    set_path = f"/labelsets/{reviews['id']}"
    panel = open_sidebar(page, lab, PANEL)
    view = select(panel, reviews)

    conflicts = view.get_by_role("list", name="Conflicts")
    expect(conflicts.locator(".jp-himalia-labels-conflict")).to_have_count(2)
    r2 = conflicts.locator('.jp-himalia-labels-conflict[data-item="r2"]')
    expect(r2.locator(f'.jp-himalia-labels-vote[data-user="{owner.name}"]')).to_have_text(
        f"{owner.name}: neg")
    expect(r2.locator(f'.jp-himalia-labels-vote[data-user="{labeler.name}"]')).to_have_text(
        f"{labeler.name}: pos")

    r2.get_by_label("Adjudicate r2").select_option(label="neg")

    expect(r2.locator(".jp-himalia-labels-decided")).to_have_text("decided: neg")
    decided = {c["item_id"]: c for c in owner.ok("GET", f"{set_path}/conflicts")["conflicts"]}
    assert decided["r2"]["adjudicated"] == "neg" and decided["r4"]["adjudicated"] is None
    expect(r2.get_by_label("Adjudicate r2")).to_have_value('"neg"')

    view.get_by_role("button", name="Snapshot").click()
    note = view.locator(".jp-himalia-labels-taken")
    expect(note).to_have_text(re.compile(r"^Snapshot v1 taken: "))
    [taken] = owner.ok("GET", f"{set_path}/snapshots")["snapshots"]
    expect(note).to_have_text(
        f"Snapshot v1 taken: {taken['items']} items, {taken['annotations']} labels.")
    snapshots = view.get_by_role("list", name="Snapshots")
    expect(snapshots.locator('.jp-himalia-labels-snapshot[data-version="1"]')).to_contain_text(
        taken["sha256"][:12])

    view.get_by_role("button", name="Snapshot").click()
    expect(note).to_have_text("The labels have not changed since snapshot v1.")
    expect(snapshots.locator(".jp-himalia-labels-snapshot")).to_have_count(1)


def test_a_shared_set_offers_labeling_but_leaves_agreement_and_snapshots_to_its_owner(
    page: Page, lab: str, cats: dict, colleague: Person
) -> None:
    panel = open_sidebar(page, lab, PANEL)

    view = select(panel, cats)

    expect(view).to_contain_text(
        f"Agreement, conflicts and snapshots are for the set's owner, {colleague.name}.")
    expect(view.get_by_role("button", name="Label…")).to_be_visible()
    expect(view.get_by_role("button", name="Snapshot")).to_be_hidden()
    expect(view.locator(".jp-himalia-labels-managed")).to_be_hidden()


def test_label_opens_the_platforms_labeling_page_in_a_new_tab(
    page: Page, lab: str, platform: Platform, owner: Person, reviews: dict
) -> None:
    browser_log_in(page, platform, owner.name, STRONG)
    panel = open_sidebar(page, lab, PANEL)
    view = select(panel, reviews)

    with page.expect_popup() as opened:
        view.get_by_role("button", name="Label…").click()

    expect(opened.value).to_have_url(
        re.compile(rf"^{re.escape(platform.url)}/services/himalia/label/{reviews['id']}$"))


def test_a_viewer_sees_the_platforms_refusal_not_a_blank_panel(
    page: Page, platform: Platform, unique_name, reviews: dict,
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    viewer = Person(platform, unique_name("lv"), "viewer")
    refusal = viewer.call("GET", "/labelsets")
    assert refusal.status_code == 403

    with lab_for(platform, viewer, tmp_path_factory.mktemp("viewer-lab")) as app:
        panel = open_sidebar(page, f"{app.url}lab?token={app.token}", PANEL)

        error = panel.locator(".jp-himalia-state.jp-himalia-error")
        expect(error).to_have_text(refusal.json()["message"])
        expect(panel.locator(".jp-himalia-labels-set")).to_have_count(0)
