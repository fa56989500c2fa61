"""The kernel side of labeling without a platform: uncertainty scores, how items are built from
frames and files, and ``%label``'s argument errors (the platform parts run in
tests/integration/test_labels*.py)."""

from __future__ import annotations

import base64
import math

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.sdk import HimaliaError
from himalia.sdk.active import uncertainty
from himalia.sdk.labels import _encoded, _items


def test_uncertainty_strategies_match_hand_computed_values():
    p = [[0.9, 0.1, 0.0], [0.4, 0.35, 0.25]]
    assert uncertainty(p, "least_confidence").tolist() == pytest.approx([0.1, 0.6])
    assert uncertainty(p, "margin").tolist() == pytest.approx([1 - 0.8, 1 - 0.05])
    entropy = -(0.4 * math.log(0.4) + 0.35 * math.log(0.35) + 0.25 * math.log(0.25))
    assert uncertainty(p, "entropy").tolist() == pytest.approx(
        [-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), entropy])
    with pytest.raises(HimaliaError, match="least_confidence"):
        uncertainty(p, "random")
    with pytest.raises(HimaliaError, match="one probability per class"):
        uncertainty([0.2, 0.8], "margin")


def test_items_from_texts_frames_rows_and_image_files(tmp_path):
    assert list(_items(["a", "b"], text=None, image=None, id_column=None, images=None, rows=None)) == [
        {"id": "0", "text": "a"}, {"id": "1", "text": "b"}]
    frame = pd.DataFrame({"tid": [7, 9], "body": ["x", "y"], "n": [1.5, None]})
    assert list(_items(frame, text="body", image=None, id_column="tid", images=None, rows=None)) == [
        {"id": "7", "text": "x"}, {"id": "9", "text": "y"}]
    rows = list(_items(None, text=None, image=None, id_column="tid", images=None, rows=frame))
    assert rows == [{"id": "7", "row": {"body": "x", "n": 1.5}}, {"id": "9", "row": {"body": "y", "n": None}}]
    with pytest.raises(HimaliaError, match="No column 'text'"):
        list(_items(frame, text="text", image=None, id_column=None, images=None, rows=None))
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    (item,) = _items(None, text=None, image=None, id_column=None, images=[image], rows=None)
    sent = _encoded(item)
    assert sent["id"] == "cat.png" and base64.b64decode(sent["image"]) == b"\x89PNG fake"
    assert sent["source"] == str(image)
    with pytest.raises(HimaliaError, match="cannot read"):
        _encoded({"id": "x", "path": tmp_path / "missing.png"})


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "himalia.magics")
    return shell


@pytest.mark.parametrize("line, message", [
    ("open", "name one label set"),
    ("status a b", "name one label set"),
    ("tickets --data nope", "--data nope: no such variable"),
    ("tickets --model nope", "--model nope: no such variable"),
    ("tickets --k 0 --classes a", "--k is at least 1"),
    ("tickets --task boxes", "invalid choice"),
])
def test_label_magic_mistakes_are_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("label", line)
