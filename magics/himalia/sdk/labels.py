"""Labeling from Python: label sets, items, sharing, labels as a DataFrame, snapshots.

::

    from himalia.sdk import labels
    tickets = labels.create("tickets", ["billing", "bug", "feature"], k=2)
    tickets.add(df, text="body", id="ticket_id")        # or images=[paths], rows=df
    tickets.share(users=["bob"], groups=["support"])
    tickets.widget()                                     # label in the notebook
    train = tickets.to_frame()                           # a frozen, versioned snapshot

``to_frame()`` freezes the labels as a numbered snapshot (a new version only when labels changed)
and returns one row per labeled item; ``df.attrs["himalia.labels"]`` names the snapshot, and
``himalia.sdk.train`` (``%train``) records it on its MLflow run.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .client import Client, HimaliaError

#: Items per request when adding many.
BATCH = 500
ATTR = "himalia.labels"
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


class LabelSet:
    """One label set of the platform, by id."""

    def __init__(self, data: dict, client: Client):
        self.data = data
        self.client = client

    def __repr__(self) -> str:
        p = self.data.get("progress", {})
        return (f"<LabelSet {self.name!r} #{self.id} by {self.data['owner']}: {p.get('done', 0)}/"
                f"{p.get('items', 0)} items done, k={self.data['k']}>")

    @property
    def id(self) -> int:
        return self.data["id"]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def classes(self) -> list[str]:
        return self.data["classes"]

    def _call(self, method: str, path: str = "", **kwargs) -> Any:
        return self.client.request(method, f"labelsets/{self.id}{path}", **kwargs)

    def refresh(self) -> "LabelSet":
        self.data = self._call("GET")
        return self

    @property
    def progress(self) -> dict:
        """``{items, done, labels, annotators: {user: count}, mine, remaining_for_me}``."""
        return self.refresh().data["progress"]

    def add(self, items: Any = None, *, text: str | None = None, image: str | None = None,
            id: str | None = None, images: Sequence[str | os.PathLike] | None = None,
            rows: Any = None, progress: bool = True) -> int:
        """Add items, all checked by the platform before any is stored (per request of
        :data:`BATCH`). ``items``: a list of ``{"id", "text"|"image"|"row"}``, a list of
        strings (texts, ids 0, 1, ...), or a DataFrame with ``text=`` (a column of texts) or
        ``image=`` (a column of image paths); ``id=`` names the id column (else the index).
        ``images``: image files (ids: their names). ``rows``: a DataFrame whose rows are items.
        Image files are read here, as you, and must be among your own files. How many were added."""
        prepared = list(_items(items, text=text, image=image, id_column=id, images=images, rows=rows))
        if not prepared:
            raise HimaliaError("Nothing to add: pass texts, a DataFrame with text=/image=, "
                               "images=[paths] or rows=DataFrame.")
        from tqdm.auto import tqdm

        added = 0
        with tqdm(total=len(prepared), desc=f"adding to {self.name}", unit="items",
                  disable=not progress or len(prepared) <= BATCH) as bar:
            for start in range(0, len(prepared), BATCH):
                chunk = [_encoded(item) for item in prepared[start:start + BATCH]]
                added += self._call("POST", "/items", json=chunk)["added"]
                bar.update(len(chunk))
        self.refresh()
        return added

    def share(self, users: Iterable[str] = (), groups: Iterable[str] = ()) -> "LabelSet":
        """Who labels the set (replaces the lists): hub users and groups."""
        self.data = self._call("POST", "/share", json={"users": list(users), "groups": list(groups)})
        return self

    def annotations(self, include_undone: bool = False):
        """Every label as a DataFrame (yours only, unless you own the set)."""
        import pandas as pd

        found = self._call("GET", "/annotations", params={"include_undone": include_undone})
        return pd.DataFrame(found["annotations"], columns=[
            "item_id", "user", "label", "comment", "seconds", "created_at", "client_id",
            *(["undone_at"] if include_undone else [])])

    def agreement(self) -> dict:
        """``{method: cohen|fleiss, kappa, per_class, confusion, items, annotators}``."""
        return self._call("GET", "/agreement")

    def conflicts(self) -> list[dict]:
        return self._call("GET", "/conflicts")["conflicts"]

    def adjudicate(self, item_id: str, label: str | list[str]) -> dict:
        """Decide an item's label where people disagree (owners)."""
        return self._call("POST", f"/items/{item_id}/adjudicate", json={"label": label})

    def snapshot(self) -> dict:
        """Freeze the labels: ``{version, sha256, items, annotations, agreement}``; the same
        labels as the latest snapshot give that snapshot back."""
        return self._call("POST", "/snapshots")

    def snapshots(self) -> list[dict]:
        return self._call("GET", "/snapshots")["snapshots"]

    def to_frame(self, version: int | None = None):
        """The labels for training, one row per labeled item (``item_id``, ``label``, ``votes``,
        ``n_labels``, ``agreement`` and the item's ``text``, ``row`` columns or
        ``image_path``), from snapshot ``version`` (default: a snapshot of the labels now).
        ``df.attrs["himalia.labels"]`` holds ``{labelset, labelset_id, version, sha256,
        agreement}``; inside an MLflow run it is also logged as tags."""
        import pandas as pd

        if version is None:
            version = self.snapshot()["version"]
        snap = self._call("GET", f"/snapshots/{version}")
        rows = []
        for r in snap["rows"]:
            row = {k: v for k, v in r.items() if k != "row"}
            row.update(r.get("row") or {})
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame.attrs[ATTR] = {k: snap[k] for k in ("labelset", "labelset_id", "version", "sha256")}
        frame.attrs[ATTR]["agreement"] = {"method": snap["agreement"].get("method"),
                                          "kappa": snap["agreement"].get("kappa")}
        log_to_run(frame)
        return frame

    def export(self, path: str | os.PathLike, format: str | None = None, version: int | None = None) -> Path:
        """Write :meth:`to_frame` to ``path`` as CSV, Parquet or JSON Lines (``format``, else
        from the file's suffix)."""
        path = Path(path)
        format = (format or path.suffix.lstrip(".") or "csv").lower()
        if format not in EXPORT_FORMATS:
            raise HimaliaError(f"format: one of {', '.join(EXPORT_FORMATS)}, not {format!r}.")
        import json

        frame = self.to_frame(version)
        if format == "jsonl":
            frame.to_json(path, orient="records", lines=True)
            return path
        # Columns of objects (votes per person; multi-label lists in CSV) as JSON text.
        flat = frame.copy()
        flat.attrs = {}
        columns = ["votes", "label"] if format == "csv" else ["votes"]
        for column in columns:
            if column in flat:
                flat[column] = flat[column].map(lambda v: v if isinstance(v, str) or v is None
                                                else json.dumps(v))
        if format == "csv":
            flat.to_csv(path, index=False)
        else:
            flat.to_parquet(path, index=False)
        return path

    def set_priorities(self, scores: Mapping[str, float], strategy: str = "", model: str = "") -> int:
        return self._call("PUT", "/priorities", json={"priorities": {str(k): float(v) for k, v in scores.items()},
                                                      "strategy": strategy, "model": model})["updated"]

    def widget(self, model: Any = None, data: Any = None, strategy: str = "least_confidence",
               features: Callable | None = None):
        """The labeling widget for this set; with ``model`` (a fitted estimator with
        ``predict_proba`` or an MLflow model URI) and ``data`` (the items' features, indexed by
        item id) the queue is ordered by the model's uncertainty and re-ranked as labels
        arrive (see :mod:`himalia.sdk.active`)."""
        from himalia.widgets import Labeler

        learner = None
        if model is not None:
            from .active import ActiveLearner

            learner = ActiveLearner(self, model, data, strategy=strategy)
            learner.rank()
        labeler = Labeler(self.refresh().data, client=self.client)
        if learner is not None:
            labeler.on_label(learner.labeled)
        labeler.learner = learner
        return labeler

    def delete(self) -> None:
        self._call("DELETE")


class Labels:
    """Label sets of the platform, through one client."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client.from_env()

    def create(self, name: str, classes: Sequence[str], *, k: int = 1, task: str = "single",
               instructions: str = "", users: Iterable[str] = (), groups: Iterable[str] = ()) -> LabelSet:
        body: dict = {"name": name, "classes": list(classes), "k": k, "task": task,
                      "instructions": instructions}
        if users or groups:
            body["share"] = {"users": list(users), "groups": list(groups)}
        return LabelSet(self.client.request("POST", "labelsets", json=body), self.client)

    def get(self, ref: str | int) -> LabelSet:
        """A set by id, or one of yours by name."""
        ref = str(ref)
        try:
            return LabelSet(self.client.request("GET", f"labelsets/{ref}"), self.client)
        except HimaliaError as e:
            if e.status != 404 or ref.isdigit():
                raise
            shared = [s for s in self.list() if s.name == ref]
            if len(shared) == 1:
                return shared[0]
            raise

    def list(self) -> list[LabelSet]:
        return [LabelSet(d, self.client) for d in self.client.request("GET", "labelsets")["labelsets"]]

    def ensure(self, name: str, classes: Sequence[str] | None = None, **kwargs) -> tuple[LabelSet, bool]:
        """Your set ``name`` (classes must match when given), or a new one; (set, created)."""
        try:
            found = self.get(name)
        except HimaliaError as e:
            if e.status != 404:
                raise
            if not classes:
                raise HimaliaError(f"No label set '{name}' yet: give its classes to create it.", 404) from None
            return self.create(name, classes, **kwargs), True
        if classes and list(classes) != found.classes:
            raise HimaliaError(f"'{name}' exists with classes {', '.join(found.classes)}; use those "
                               "or another name.", 409)
        return found, False


def log_to_run(frame) -> None:
    """Tag the active MLflow run with the snapshot ``frame`` came from (if any)."""
    import sys

    info = getattr(frame, "attrs", {}).get(ATTR)
    mlflow = sys.modules.get("mlflow")
    if not info or mlflow is None or mlflow.active_run() is None:
        return
    mlflow.set_tags(run_tags(info))


def run_tags(info: dict) -> dict:
    """MLflow tags naming a label snapshot."""
    return {"himalia.labels": f"{info['labelset']}@v{info['version']}",
            "himalia.labelset_id": str(info["labelset_id"]),
            "himalia.labels_sha256": info["sha256"]}


def _items(items: Any, *, text, image, id_column, images, rows) -> Iterable[dict]:
    if images is not None:
        for path in images:
            yield {"id": Path(path).name, "path": path}
    if rows is not None:
        yield from _frame_items(rows, "row", None, id_column)
    if items is None:
        return
    if hasattr(items, "columns"):
        if text is None and image is None:
            yield from _frame_items(items, "row", None, id_column)
        else:
            yield from _frame_items(items, "text" if text else "image", text or image, id_column)
        return
    for n, item in enumerate(items):
        if isinstance(item, str):
            yield {"id": str(n), "text": item}
        elif isinstance(item, Mapping):
            yield dict(item)
        else:
            raise HimaliaError(f"Item {n}: a string or a dict with 'id' and 'text'/'image'/'row', "
                               f"not {type(item).__name__}.")


def _frame_items(frame, kind: str, column: str | None, id_column: str | None) -> Iterable[dict]:
    import json

    if column is not None and column not in frame.columns:
        raise HimaliaError(f"No column '{column}'; the columns are {', '.join(map(str, frame.columns))}.")
    if id_column is not None and id_column not in frame.columns:
        raise HimaliaError(f"No id column '{id_column}'.")
    ids = frame[id_column] if id_column else frame.index
    if kind == "row":
        values = frame.drop(columns=[id_column]) if id_column else frame
        records = json.loads(values.to_json(orient="records", date_format="iso"))
        for key, record in zip(ids, records):
            yield {"id": str(key), "row": record}
        return
    for key, value in zip(ids, frame[column]):
        yield {"id": str(key), "text": str(value)} if kind == "text" else {"id": str(key), "path": value}


def _encoded(item: dict) -> dict:
    """An item as the platform takes it: image files read (as you) and sent as base64."""
    item = dict(item)
    path = item.pop("path", None)
    if path is not None:
        path = Path(path).expanduser().absolute()
        try:
            data = path.read_bytes()
        except OSError as e:
            raise HimaliaError(f"Item '{item.get('id')}': cannot read {path}: {e.strerror}.") from None
        item["image"] = base64.b64encode(data).decode()
        item["source"] = str(path)
    elif isinstance(item.get("image"), (bytes, bytearray)):
        item["image"] = base64.b64encode(item["image"]).decode()
    return item


_default: Labels | None = None


def _labels() -> Labels:
    global _default
    if _default is None:
        _default = Labels()
    return _default


def create(name: str, classes: Sequence[str], **kwargs) -> LabelSet:
    return _labels().create(name, classes, **kwargs)


def get(ref: str | int) -> LabelSet:
    return _labels().get(ref)


def list_sets() -> list[LabelSet]:
    return _labels().list()


def add_items(ref: str | int, items: Any = None, **kwargs) -> int:
    return get(ref).add(items, **kwargs)


def share(ref: str | int, users: Iterable[str] = (), groups: Iterable[str] = ()) -> LabelSet:
    return get(ref).share(users, groups)


def annotations(ref: str | int, include_undone: bool = False):
    return get(ref).annotations(include_undone)


def to_frame(ref: str | int, version: int | None = None):
    return get(ref).to_frame(version)


def snapshot(ref: str | int) -> dict:
    return get(ref).snapshot()
