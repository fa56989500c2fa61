"""Labeling from a scientist's kernel on the real platform: ``himalia.sdk.labels`` (items from a
DataFrame and from image files the person owns), ``%label`` opening the widget, the frozen
snapshot of ``to_frame()`` recorded by ``%train`` on its MLflow run, active learning ordering
the queue, and exports through the CLI."""

from __future__ import annotations

import json

import pytest

from himalia_testing import Platform, mlflow_client
from integration.test_features import Scientist

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def platform(sqlite_platform) -> Platform:
    return sqlite_platform


@pytest.fixture(scope="module")
def ada(platform, unique_name_module):
    return Scientist(platform, unique_name_module("ka"))


def test_sdk_items_from_a_frame_and_own_images_and_a_clear_refusal_outside(ada):
    out = ada.run("""
import base64, io, pandas as pd
from PIL import Image
from himalia.sdk import labels
tickets = labels.create("tickets", ["billing", "bug"], k=1)
df = pd.DataFrame({"ticket_id": ["t1", "t2", "t3"], "body": ["refund", "crash", "invoice"]})
print("added", tickets.add(df, text="body", id="ticket_id", progress=False))
photos = labels.create("photos", ["cat", "dog"])
Image.new("RGB", (8, 8), (255, 0, 0)).save("red.png")
print("images", photos.add(images=["red.png"], progress=False))
try:
    photos.add([{"id": "passwd", "path": "/etc/hostname"}], progress=False)
except Exception as e:
    print("refused", getattr(e, "status", None), e)
print("next", tickets.client.request("GET", f"labelsets/{tickets.id}/next")["item"])
""")
    assert "added 3" in out and "images 1" in out
    assert "refused 400" in out or "refused 403" in out
    assert "outside your files" in out or "cannot be decoded" in out
    assert "'id': 't1'" in out and "'text': 'refund'" in out


def test_to_frame_is_a_versioned_snapshot_that_train_records(platform, ada):
    out = ada.run("""
import pandas as pd
from himalia.sdk import labels
from himalia.sdk.train import train
rows = pd.DataFrame({"x": [0.1 * i for i in range(40)], "y2": [i % 3 for i in range(40)]})
ls = labels.create("rows", ["low", "high"])
ls.add(rows=rows, progress=False)
for n in range(40):
    ls.client.request("POST", f"labelsets/{ls.id}/annotations",
                      json={"item_id": str(n), "label": "high" if n >= 20 else "low"})
frame = ls.to_frame()
print("attrs", frame.attrs["himalia.labels"]["version"], len(frame), sorted(frame.columns))
again = ls.to_frame()
print("same", again.attrs["himalia.labels"]["version"], again.attrs["himalia.labels"]["sha256"] == frame.attrs["himalia.labels"]["sha256"])
result = train("sklearn.linear_model.LogisticRegression", frame[["x", "label"]], "label",
               run_name="labeled")
print("run", result.run_id)
""")
    assert "attrs 1 40" in out and "'label'" in out and "'x'" in out
    assert "same 1 True" in out
    run_id = out.split("run ")[-1].split()[0]
    with mlflow_client(f"{platform.url}/services/mlflow", token=ada.token):
        import mlflow

        tags = mlflow.get_run(run_id).data.tags
    assert tags["himalia.labels"] == "rows@v1" and len(tags["himalia.labels_sha256"]) == 64


def test_label_magic_opens_the_widget_and_active_learning_orders_the_queue(ada):
    out = ada.run("""
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
X = pd.DataFrame({"f": np.linspace(-3, 3, 30)}, index=[str(i) for i in range(30)])
model = LogisticRegression().fit(X, (X["f"] > 0).astype(int))
items = pd.DataFrame({"f": X["f"]})
w = get_ipython().run_line_magic("label", "al --classes neg,pos --data items --model model --features X")
print(type(w).__name__, w.labelset["name"], w.labelset["progress"]["items"], w.labelset["strategy"])
from himalia.sdk import labels
ls = labels.get("al")
first = ls.client.request("GET", f"labelsets/{ls.id}/next?n=4")["items"]
print("first", [i["id"] for i in first])
""")
    assert "Labeler al 30 least_confidence" in out
    # The items nearest the decision boundary (f close to 0: ids 14 and 15) come first.
    first = json.loads(out.split("first ")[-1].strip().replace("'", '"'))
    assert set(first[:2]) == {"14", "15"}


def test_cli_exports_csv_parquet_and_jsonl(ada):
    out = ada.run("""
import subprocess, sys, pandas as pd
from himalia.sdk import labels
ls = labels.create("exp", ["a", "b"])
ls.add(["one", "two"], progress=False)
ls.client.request("POST", f"labelsets/{ls.id}/annotations", json={"item_id": "0", "label": "a"})
for suffix in ("csv", "parquet", "jsonl"):
    r = subprocess.run([sys.executable, "-m", "himalia.hub", "labels", "export", "exp", "--out", f"exp.{suffix}"],
                       capture_output=True, text=True)
    print(suffix, r.returncode, r.stdout.strip(), r.stderr.strip()[-300:])
print("csv", pd.read_csv("exp.csv")[["item_id", "label"]].values.tolist())
print("pq", pd.read_parquet("exp.parquet")["label"].tolist())
r = subprocess.run([sys.executable, "-m", "himalia.hub", "labels", "export", "nope"], capture_output=True, text=True)
print("bad", r.returncode, r.stderr.strip())
""")
    assert "csv 0 Wrote exp.csv" in out and "parquet 0" in out and "jsonl 0" in out
    assert "csv [[0, 'a']]" in out and "pq ['a']" in out
    bad = out.split("bad ")[-1]
    assert bad.startswith("1 ") and "nope" in bad and "Traceback" not in bad
