"""Active learning: order a label set's queue by a model's uncertainty, re-ranked as labels arrive.

The model is a fitted estimator with ``predict_proba`` (a scikit-learn pipeline taking the
items' texts, or their rows' columns) or an MLflow model URI of one. Scores go to the platform
as the items' priorities (higher first). Every ``every`` new labels the estimator is refitted
on the labels so far (a clone, when scikit-learn can clone it and two classes are present)
and the remaining items are scored again, in a background thread: labeling never waits.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .client import HimaliaError

STRATEGIES = ("least_confidence", "margin", "entropy")


def uncertainty(probabilities, strategy: str = "least_confidence") -> np.ndarray:
    """Per row of class probabilities, how unsure the model is (higher: label it sooner)."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise HimaliaError("predict_proba must give one probability per class (2 or more classes).")
    if strategy == "least_confidence":
        return 1.0 - p.max(axis=1)
    if strategy == "margin":
        top = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top[:, 1] - top[:, 0])
    if strategy == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    raise HimaliaError(f"strategy: one of {', '.join(STRATEGIES)}, not {strategy!r}.")


def load_model(model: Any):
    """An estimator with ``predict_proba``: ``model`` itself, or the one at an MLflow URI."""
    if isinstance(model, str):
        import mlflow

        try:
            model = mlflow.sklearn.load_model(model)
        except Exception as e:  # noqa: BLE001 - any loading failure is the user's URI
            raise HimaliaError(f"Cannot load a scikit-learn model from {model}: {e}") from None
    if not hasattr(model, "predict_proba"):
        raise HimaliaError(f"{type(model).__name__} has no predict_proba: active learning needs "
                           "class probabilities (e.g. LogisticRegression, or SVC(probability=True)).")
    return model


class ActiveLearner:
    """Scores a label set's items with a model and keeps its queue ordered by uncertainty."""

    def __init__(self, labelset, model: Any, data: Any = None, *, strategy: str = "least_confidence",
                 every: int = 10):
        if strategy not in STRATEGIES:
            raise HimaliaError(f"strategy: one of {', '.join(STRATEGIES)}, not {strategy!r}.")
        self.labelset = labelset
        self.model = load_model(model)
        self.source = model if isinstance(model, str) else type(self.model).__name__
        self.strategy = strategy
        self.every = every
        self.data = self._inputs(data)
        self.labels: dict[str, Any] = {}
        self.ranks = 0
        self.last_error = ""
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def _inputs(self, data: Any):
        """The model's inputs indexed by item id: ``data`` given, or the items' texts / rows."""
        import pandas as pd

        if data is not None:
            frame = data if hasattr(data, "index") else pd.Series(list(data))
            frame = frame.copy()
            frame.index = frame.index.map(str)
            return frame
        texts, rows, offset = {}, {}, 0
        while True:
            page = self.labelset._call("GET", "/items", params={"offset": offset, "limit": 1000})
            for item in page["items"]:
                if item["kind"] == "text":
                    texts[item["id"]] = item["text"]
                elif item["kind"] == "row":
                    rows[item["id"]] = item["row"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        if rows and not texts:
            return pd.DataFrame.from_dict(rows, orient="index")
        if texts and not rows:
            return pd.Series(texts)
        raise HimaliaError("Pass data= (the model's inputs indexed by item id): this set's items "
                           "are not all texts or all table rows.")

    def scores(self, ids=None) -> dict[str, float]:
        inputs = self.data if ids is None else self.data.loc[list(ids)]
        if len(inputs) == 0:
            return {}
        values = uncertainty(self.model.predict_proba(inputs), self.strategy)
        return dict(zip(inputs.index, map(float, values)))

    def rank(self) -> int:
        """Score the items not labeled here yet and send their order to the platform."""
        todo = [i for i in self.data.index if i not in self.labels]
        updated = self.labelset.set_priorities(self.scores(todo), strategy=self.strategy,
                                               model=str(self.source))
        self.ranks += 1
        return updated

    def refit(self) -> bool:
        """Fit a clone of the estimator on the labels so far (needs two classes)."""
        try:
            from sklearn.base import clone
        except ImportError:
            return False
        known = {k: v for k, v in self.labels.items() if k in self.data.index}
        if len(set(map(str, known.values()))) < 2:
            return False
        try:
            model = clone(self.model)
            model.fit(self.data.loc[list(known)], [str(v) for v in known.values()])
        except Exception as e:  # noqa: BLE001 - keep the old model; say why on the widget
            self.last_error = f"refit failed: {e}"
            return False
        self.model = model
        return True

    def labeled(self, item_id: str, label: Any) -> None:
        """A label arrived: every ``every`` labels, refit and re-rank in the background."""
        self.labels[str(item_id)] = label[0] if isinstance(label, list) and len(label) == 1 else label
        if len(self.labels) % self.every == 0:
            self.rerank_in_background()

    def rerank_in_background(self) -> threading.Thread | None:
        if not self._busy.acquire(blocking=False):
            return None  # one re-rank at a time; the next label starts another

        def work() -> None:
            try:
                self.refit()
                self.rank()
            except Exception as e:  # noqa: BLE001 - a background failure is reported, not raised
                self.last_error = str(e)
            finally:
                self._busy.release()

        self._thread = threading.Thread(target=work, name="himalia-active-learning", daemon=True)
        self._thread.start()
        return self._thread
