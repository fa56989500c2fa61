"""The labeling widget without a kernel: the key of each class, the same in Python and in the
front end (run by Node.js), and the files anywidget sends to the browser."""

from __future__ import annotations

import json
import shutil
import subprocess

from himalia_testing import REPO, require_service

from himalia.widgets import Labeler, shortcut_keys

LABELER_JS = REPO / "magics" / "himalia" / "widgets" / "labeler.js"


def test_keys_are_digits_then_the_letters_not_kept_for_undo_skip_and_comment():
    keys = shortcut_keys(40)
    assert keys[:11] == [*"1234567890", "a"]
    assert not {"u", "s", "c"} & set(keys)
    assert len(keys) == 10 + 23, "past 33 classes, a class has no key (it is clicked)"
    assert shortcut_keys(2) == ["1", "2"]


def test_the_front_end_gives_each_class_the_same_key():
    node = shutil.which("node")
    if node is None:
        require_service("Node.js is not installed (the tests' proxy needs it too)")
    script = f"import({json.dumps(LABELER_JS.as_uri())}).then((m) => console.log(JSON.stringify(m.shortcutKeys(40))))"
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(out.stdout) == shortcut_keys(40)


def test_the_keys_follow_the_classes_of_the_set():
    labeler = Labeler({"id": 1, "name": "tickets", "classes": ["billing", "bug"]})
    assert labeler.shortcuts == ["1", "2"]
    labeler.labelset = {**labeler.labelset, "classes": ["billing", "bug", "feature"]}
    assert labeler.shortcuts == ["1", "2", "3"]
    assert labeler.acked == [] and labeler.counted == 0 and labeler.pending == 0


def test_the_browser_gets_the_module_and_its_styles():
    labeler = Labeler({"id": 1, "name": "tickets", "classes": ["bug"]})
    assert "export default { render }" in labeler._esm and "export function mount" in labeler._esm
    assert ".himalia-labeler" in labeler._css
