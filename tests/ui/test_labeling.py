"""Labeling with the keyboard in a real browser, against the real platform: the ``%label``
widget in JupyterLab, the standalone page a labeler reaches through the hub, and a kernel killed
while labels are still on their way.

``himalia up`` runs once for the module. A scientist (who can log in to the hub) owns the label
sets; a person with the ``labeler`` role logs in through the hub's form in the browser.
JupyterLab runs standalone with the environment the hub gives the scientist's server, so its
server extension passes the widget's calls through to the platform API with the scientist's
token and ``%label`` runs in a real himalia kernel. Headless Chromium (Debian's) drives both;
every process runs in its own process group on a free port, every directory temporary.

The widget is driven by number keys only (1, 2, 3: the first, second, third class; ``u`` undo,
``s`` skip) and waited on through its own state on its root ``.himalia-labeler``:
``data-item-id`` (the item shown), ``data-pending`` (labels, skips and undos not yet
acknowledged) and ``data-saved`` (labels acknowledged). What was stored is then read back from
the platform API as the set's owner.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from himalia_testing import (OFFLINE_LAB, STRONG, JupyterProcess, Person, Platform,
                             browser_log_in, jupyter_app, wait_for)
from playwright.sync_api import Locator, Page, expect
from ui.test_deployments_panel import lab_prerequisites  # noqa: F401 - the fixture is used

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CLASSES = ["a", "b", "c"]
#: The key of each class (``himalia.widgets.labeler.shortcut_keys``).
KEYS = {"1": "a", "2": "b", "3": "c"}
ROOT = ".himalia-labeler"
#: Making a set and adding its items in a fresh kernel (imports, two API calls) on a small machine.
WIDGET_MS = 90_000
#: Until every label given is acknowledged by the platform.
FLUSH_MS = 60_000


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
def scientist(platform: Platform, unique_name_module) -> Person:
    """A scientist who can log in to the hub; owns every set of these tests."""
    name = unique_name_module("ls")
    session = platform.login(name, platform.create_user(name, role="scientist"))
    token = platform.user_token(session, note="Labeling tests")["token"]
    return Person(platform, name, token=token)


@pytest.fixture(scope="module")
def labeler(platform: Platform, unique_name_module) -> Person:
    """A person with the ``labeler`` role and a password (they log in through the hub's form)."""
    name = unique_name_module("ll")
    platform.create_user(name, role="labeler")
    assert platform.role_of(name) == "labeler"
    r = platform.api("POST", f"/users/{name}/tokens", json={"note": "Labeling tests"})
    assert r.status_code == 201, r.text
    return Person(platform, name, token=r.json()["token"])


@pytest.fixture(scope="module")
def lab(platform: Platform, scientist: Person,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterProcess]:
    """JupyterLab with the environment the hub gives the scientist's server."""
    env = {
        "HIMALIA_API_URL": f"{platform.url}/services/himalia/",
        "JUPYTERHUB_API_TOKEN": scientist.token,
        "JUPYTERHUB_USER": scientist.name,
    }
    with jupyter_app(tmp_path_factory.mktemp("lab"), "jupyterlab", OFFLINE_LAB, env) as app:
        yield app


# -- helpers ------------------------------------------------------------------------------------


def texts(n: int) -> list[str]:
    moods = ["great", "broken", "fine"]
    return [f"Review {i}: {random.Random(i).choice(moods)} phone" for i in range(n)]


def write_notebook(lab: JupyterProcess, path: str, source: str) -> None:
    """A notebook of one code cell, on the himalia kernel (the one with ``%label``)."""
    (Path(lab.log).parent / "root" / path).write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": source}],
        "metadata": {"kernelspec": {"name": "himalia", "display_name": "Python 3 (himalia)",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


def label_cell(name: str, n: int) -> str:
    return f"texts = {texts(n)!r}\n%label {name} --classes {','.join(CLASSES)} --data texts"


def open_widget(page: Page, lab: JupyterProcess, path: str) -> Locator:
    """Open ``path`` in JupyterLab (a workspace of its own), run its cell, and give the widget
    the keyboard focus; the widget's root."""
    workspace = Path(path).stem
    page.goto(f"{lab.url}lab/workspaces/{workspace}/tree/{path}?token={lab.token}")
    expect(page.locator(".jp-NotebookPanel")).to_be_visible(timeout=60_000)
    # The status bar names the kernel once it is connected; a cell run before that asks which
    # kernel to start instead of running.
    expect(page.get_by_role("button", name="Python 3 (himalia) | Idle")).to_be_visible(
        timeout=60_000)
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    # Shift+Enter runs the cell only once its editor has the keyboard.
    expect(page.locator(".jp-Cell .cm-editor.cm-focused").first).to_be_visible(timeout=30_000)
    page.keyboard.press("Shift+Enter")
    root = page.locator(f".jp-OutputArea {ROOT}")
    expect(root).to_have_attribute("data-item-id", re.compile(".+"), timeout=WIDGET_MS)
    # Running the cell leaves the focus in the next cell's editor; keys go to the focused widget.
    root.focus()
    return root


def shown_item(root: Locator) -> str:
    """The item on screen, once there is one."""
    expect(root).to_have_attribute("data-item-id", re.compile(".+"))
    return root.get_attribute("data-item-id")


def label_by_keys(root: Locator, count: int, seed: int) -> dict[str, str]:
    """Press a class's key ``count`` times, each on the item then shown, waiting only for the
    widget to show the next one; ``{item id: class}`` of the keys pressed."""
    rng = random.Random(seed)
    given: dict[str, str] = {}
    for _ in range(count):
        item, key = shown_item(root), rng.choice(sorted(KEYS))
        assert item not in given, f"item {item} was shown twice"
        root.page.keyboard.press(key)
        expect(root).not_to_have_attribute("data-item-id", item)
        given[item] = KEYS[key]
    return given


def all_saved(root: Locator, saved: int) -> None:
    expect(root).to_have_attribute("data-pending", "0", timeout=FLUSH_MS)
    expect(root).to_have_attribute("data-saved", str(saved))


def stored(owner: Person, set_id: int, include_undone: bool = False) -> list[dict]:
    query = "?include_undone=true" if include_undone else ""
    return owner.ok("GET", f"/labelsets/{set_id}/annotations{query}")["annotations"]


def stored_labels(owner: Person, set_id: int) -> dict[str, str]:
    found = stored(owner, set_id)
    labels = {a["item_id"]: a["label"] for a in found}
    assert len(labels) == len(found), f"an item holds two live labels: {found}"
    return labels


# -- the tests ----------------------------------------------------------------------------------


def test_a_scientist_labels_fifty_texts_by_keyboard_in_jupyterlab(
        page: Page, lab: JupyterProcess, scientist: Person) -> None:
    write_notebook(lab, "reviews.ipynb", label_cell("reviews", 50))
    root = open_widget(page, lab, "reviews.ipynb")
    given = label_by_keys(root, 50, seed=1)
    all_saved(root, 50)
    labelset = scientist.ok("GET", "/labelsets/reviews")
    assert labelset["progress"]["items"] == 50
    assert stored_labels(scientist, labelset["id"]) == given
    assert labelset["progress"]["done"] == 50 and labelset["progress"]["mine"] == 50
    assert all(a["user"] == scientist.name for a in stored(scientist, labelset["id"]))
    # Nothing left: the widget says so.
    expect(root.locator(".himalia-labeler-empty")).to_be_visible()


def test_a_labeler_labels_on_the_standalone_page_with_undo_and_skip(
        page: Page, platform: Platform, scientist: Person, labeler: Person) -> None:
    labelset = scientist.ok("POST", "/labelsets", 201, json={
        "name": "tickets", "classes": CLASSES, "k": 1, "instructions": "What the ticket is about.",
        "share": {"users": [labeler.name]}})
    set_id = labelset["id"]
    scientist.ok("POST", f"/labelsets/{set_id}/items", 201,
                 json=[{"id": f"t{i}", "text": text} for i, text in enumerate(texts(53))])

    browser_log_in(page, platform, labeler.name, STRONG)
    page.goto(f"{platform.url}/services/himalia/label/")
    page.get_by_role("link", name="tickets", exact=True).click()
    root = page.locator(ROOT)
    expect(root).to_be_visible()
    given = label_by_keys(root, 50, seed=2)
    all_saved(root, 50)
    assert stored_labels(scientist, set_id) == given
    last = list(given)[-1]

    # u: the last label is taken back on the platform, and its item is shown again.
    page.keyboard.press("u")
    expect(root).to_have_attribute("data-item-id", last)
    all_saved(root, 49)
    assert last not in stored_labels(scientist, set_id)
    undone = [a for a in stored(scientist, set_id, include_undone=True) if a["item_id"] == last]
    assert len(undone) == 1 and undone[0]["undone_at"], undone
    # Labeled again, with another class.
    again = next(k for k, c in sorted(KEYS.items()) if c != given[last])
    page.keyboard.press(again)
    expect(root).not_to_have_attribute("data-item-id", last)
    given[last] = KEYS[again]

    # s: the item shown is skipped and never handed to the labeler again.
    skipped = shown_item(root)
    page.keyboard.press("s")
    expect(root).not_to_have_attribute("data-item-id", skipped)
    after_skip = shown_item(root)
    all_saved(root, 50)
    assert stored_labels(scientist, set_id) == given
    assert all(a["user"] == labeler.name for a in stored(scientist, set_id))
    # The labeler's own queue: the skipped item is not in it.
    queue = {i["id"] for i in labeler.ok("GET", f"/labelsets/{set_id}/next?n=50")["items"]}
    assert queue == {f"t{i}" for i in range(53) if f"t{i}" not in given and f"t{i}" != skipped}
    assert after_skip in queue
    progress = scientist.ok("GET", f"/labelsets/{set_id}")["progress"]
    assert progress["annotators"] == {labeler.name: 50} and progress["labels"] == 50


def kernel_process(lab: JupyterProcess, path: str) -> psutil.Process:
    """The kernel of notebook ``path``: the process started with its connection file."""
    r = requests.get(f"{lab.url}api/sessions", headers={"Authorization": f"token {lab.token}"},
                     timeout=30)
    [kernel_id] = [s["kernel"]["id"] for s in r.json() if s["path"] == path]
    connection_file = f"kernel-{kernel_id}.json"
    def started_with_it(p: psutil.Process) -> bool:
        return any(a.endswith(connection_file) for a in p.info["cmdline"] or [])

    return wait_for(lambda: next(filter(started_with_it, psutil.process_iter(["cmdline"])), None),
                    30, what=f"the process of kernel {kernel_id}")


#: Records, in the page, each key press the widget saw: the item shown when the key went down
#: and the item shown when it came up (the widget acts on keydown). No round trip per key.
RECORD_KEYS = """root => {
    window.__keys = [];
    window.addEventListener("keydown", (e) => {
        window.__keys.push({key: e.key, before: root.dataset.itemId, after: null});
    }, true);
    window.addEventListener("keyup", () => {
        const last = window.__keys[window.__keys.length - 1];
        if (last && last.after === null) last.after = root.dataset.itemId;
    }, true);
}"""
#: How many of those presses moved the widget on: labels sent.
SENT = "() => window.__keys.filter((p) => p.before && p.after !== p.before).length"
BURST = 30


def test_labels_given_in_a_burst_survive_the_kernel_being_killed(
        page: Page, lab: JupyterProcess, scientist: Person) -> None:
    """Keys are pressed as fast as Playwright sends them, with no wait between them, until
    ~30 labels are given; the notebook's kernel gets SIGKILL after the first 15 keys, while
    labels still wait to be acknowledged (JupyterLab restarts it, closing the widget's comm).
    Keys that come while the widget waits for more items ("Loading…") label nothing, so more
    bursts follow, each once the widget shows an item again. The widget's outbox goes to the
    platform over HTTP (the server extension's route), not through the kernel, so it drains in
    the same page, with no reload: every key press that moved the widget on to another item is
    a label the platform must hold."""
    write_notebook(lab, "burst.ipynb", label_cell("burst", 40))
    root = open_widget(page, lab, "burst.ipynb")
    kernel = kernel_process(lab, "burst.ipynb")
    root.evaluate(RECORD_KEYS)
    rng = random.Random(3)

    def burst(count: int) -> None:
        for _ in range(count):
            page.keyboard.press(rng.choice(sorted(KEYS)))

    burst(BURST // 2)
    os.kill(kernel.pid, signal.SIGKILL)
    pending_at_kill = int(root.get_attribute("data-pending"))
    rounds = 0
    while (sent_so_far := page.evaluate(SENT)) < BURST:
        rounds += 1
        assert rounds <= 20, f"only {sent_so_far} of {BURST} keys moved the widget on after 20 bursts"
        # JupyterLab may announce the restart in a dialog, which takes the keyboard: accept it
        # and give the widget the focus back, as a person would.
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
            expect(page.locator(".jp-Dialog")).to_have_count(0)
        shown_item(root)
        root.focus()
        burst(BURST - sent_so_far)
    kernel.wait(30)

    expect(root).to_have_attribute("data-pending", "0", timeout=FLUSH_MS)
    presses = page.evaluate("window.__keys")
    sent = {p["before"]: KEYS[p["key"]] for p in presses
            if p["key"] in KEYS and p["before"] and p["after"] != p["before"]}
    labelset = scientist.ok("GET", "/labelsets/burst")
    labels = stored_labels(scientist, labelset["id"])
    lost = sorted(item for item, label in sent.items() if labels.get(item) != label)
    extra = sorted(set(labels) - set(sent))
    print(f"burst: {len(presses)} keys, {len(sent)} labels sent, {pending_at_kill} pending at "
          f"the kill, {len(labels)} stored, lost = {len(lost)}")
    assert pending_at_kill > 0, "every label was acknowledged before the kernel died: no burst"
    assert len(sent) == BURST
    assert lost == [], f"lost = {len(lost)}: {lost}"
    assert extra == [], f"stored but never sent: {extra}"
    assert root.get_attribute("data-saved") == str(len(sent))
