"""The engine behind ``%train``: fit a model on a DataFrame, check the data for common mistakes,
score it on a held-out split and record the run in MLflow.

``train()`` is the one entry point. The guardrail checks (``check_*``), the task inference
(``infer_task``), the sampling (``sample_rows``) and the split (``split_data``) are pure functions
of a DataFrame, so each can be tested and reused on its own. mlflow and torch are imported only when
a call needs them: importing this module stays cheap for the magic that loads it.
"""

from __future__ import annotations

import copy
import html
import importlib
import importlib.metadata
import io
import math
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

TASKS = ("auto", "classification", "regression")
ENCODERS = (None, "onehot", "ordinal")

#: Task inference: an integer target is a class label when it has at most ``MAX_CLASSES``
#: distinct values and no more than ``MAX_CLASS_SHARE`` of the rows (a binary target always is).
MAX_CLASSES = 20
MAX_CLASS_SHARE = 0.05
#: Guardrail thresholds.
MIN_ROWS = 50
MIN_CLASS_SHARE = 0.10
COLLINEAR_CORR = 0.95
LEAK_CORR = 0.99
#: Correlation checks look at most at this many rows (a seeded sample), to stay fast on big frames.
CORR_SAMPLE_ROWS = 10_000
#: A column with at least this share of distinct values is an identifier, not a leak.
ID_LIKE_SHARE = 0.5
#: How many column names a guardrail message lists before "and N more".
MAX_LISTED = 8

ESTIMATOR_HELP = (
    "give an import path like sklearn.ensemble.RandomForestClassifier, an estimator variable, "
    "a torch nn.Module or a fit(train_df, test_df) function"
)


class TrainError(ValueError):
    """A mistake in what ``train()`` was given; the message says how to fix it."""


class TrainWarning(UserWarning):
    """A guardrail: something in the data that will likely spoil the model."""


@dataclass(frozen=True)
class Guardrail:
    """One finding about the data: ``check`` is a stable id (``"missing_values"``...),
    ``message`` what was found, ``fix`` what to do about it."""

    check: str
    message: str
    fix: str


@dataclass
class TrainResult:
    """What ``train()`` returns; in a notebook it shows as a small table."""

    model: Any
    task: str
    metrics: dict[str, float]
    guardrails: list[Guardrail]
    notes: list[str]
    figure: Any
    run_id: str | None
    model_uri: str | None
    n_train: int
    n_test: int
    estimator_name: str = ""
    experiment_id: str | None = None
    #: Per-epoch values of the torch training loop (``{"train_loss": [...]}``); empty otherwise.
    history: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        """The result as plain text (for terminals and logs)."""
        lines = [f"{self.estimator_name or 'model'} ({self.task}): "
                 f"{self.n_train} train rows, {self.n_test} test rows"]
        lines += [f"  {name}: {_fmt(value)}" for name, value in self.metrics.items()]
        lines.append(f"  guardrails: {len(self.guardrails)}")
        lines += [f"  ! {g.message} Fix: {g.fix}" for g in self.guardrails]
        lines += [f"  note: {note}" for note in self.notes]
        if self.run_id:
            lines.append(f"  run: {self.run_id}  model: {self.model_uri}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = [("task", self.task), ("estimator", self.estimator_name),
                ("rows", f"{self.n_train} train / {self.n_test} test")]
        rows += [(name, _fmt(value)) for name, value in self.metrics.items()]
        rows.append(("guardrails", str(len(self.guardrails))))
        if self.run_id:
            rows += [("run", self.run_id), ("model", self.model_uri or "")]
        body = "".join(f"<tr><th style='text-align:left'>{esc(str(k))}</th>"
                       f"<td style='text-align:left'>{esc(str(v))}</td></tr>" for k, v in rows)
        parts = [f"<table class='himalia-train'>{body}</table>"]
        if self.guardrails:
            items = "".join(f"<li><b>{esc(g.check)}</b>: {esc(g.message)} <i>Fix: {esc(g.fix)}</i></li>"
                            for g in self.guardrails)
            parts.append(f"<ul class='himalia-guardrails'>{items}</ul>")
        if self.notes:
            parts.append("<ul class='himalia-notes'>"
                         + "".join(f"<li>{esc(n)}</li>" for n in self.notes) + "</ul>")
        return "<div>" + "".join(parts) + "</div>"

    def figure_png(self) -> bytes | None:
        """The plot as PNG bytes (for ``IPython.display.Image``), or None without a plot."""
        if self.figure is None:
            return None
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_url(tracking_ui_base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run: ``<base>/#/experiments/<experiment_id>/runs/<run_id>``."""
    return f"{tracking_ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _listed(names: list[str]) -> str:
    shown = ", ".join(str(n) for n in names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# -- the task -----------------------------------------------------------------------------------

def _is_text(y: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(y) or isinstance(y.dtype, pd.CategoricalDtype)


def _whole_numbers(y: pd.Series) -> bool:
    values = y.dropna()
    if pd.api.types.is_integer_dtype(values):
        return True
    return pd.api.types.is_float_dtype(values) and bool(np.all(np.mod(values.to_numpy(), 1) == 0))


def infer_task(y: pd.Series) -> str:
    """``"classification"`` or ``"regression"`` from the target alone.

    Classification for bool, text and category targets, and for whole-number targets (int, or
    float holding only whole numbers, as pandas stores integers with gaps) that have two distinct
    values, or at most ``MAX_CLASSES`` distinct values making up no more than ``MAX_CLASS_SHARE``
    of the rows. Regression otherwise.
    """
    values = y.dropna()
    if pd.api.types.is_bool_dtype(values) or _is_text(values):
        return "classification"
    if _whole_numbers(values):
        distinct = values.nunique()
        if distinct <= 2 or (distinct <= MAX_CLASSES and distinct <= MAX_CLASS_SHARE * len(values)):
            return "classification"
    return "regression"


# -- guardrails ---------------------------------------------------------------------------------

def check_target_type(y: pd.Series, task: str) -> Guardrail | None:
    """A target that does not suit the task: text or yes/no for regression, a continuous number
    for classification."""
    name = y.name
    values = y.dropna()
    if task == "regression" and (_is_text(values) or pd.api.types.is_bool_dtype(values)):
        kind = "yes/no values" if pd.api.types.is_bool_dtype(values) else "labels, not numbers"
        return Guardrail("target_type", f"The target '{name}' holds {kind}, but the task is regression.",
                         "Use task='classification' (--task classification).")
    if task == "classification" and not _is_text(values) and not pd.api.types.is_bool_dtype(values):
        distinct = values.nunique()
        if not _whole_numbers(values) or distinct > MAX_CLASSES:
            return Guardrail(
                "target_type",
                f"The target '{name}' looks continuous ({distinct} distinct numbers), "
                "but the task is classification.",
                "Use task='regression' (--task regression), or bin the target into classes "
                "(pandas.cut).")
    return None


def check_class_imbalance(y: pd.Series, task: str) -> Guardrail | None:
    """A classification target whose rarest class is under ``MIN_CLASS_SHARE`` of the rows."""
    if task != "classification":
        return None
    shares = y.value_counts(normalize=True, dropna=True)
    if len(shares) < 2 or shares.iloc[-1] >= MIN_CLASS_SHARE:
        return None
    rare = [str(c) for c, s in shares.items() if s < MIN_CLASS_SHARE]
    return Guardrail(
        "class_imbalance",
        f"Imbalanced classes: {_listed(rare)} make up less than {MIN_CLASS_SHARE:.0%} of the rows each "
        f"(rarest '{shares.index[-1]}': {shares.iloc[-1]:.1%}); accuracy will flatter the model.",
        "Pass an estimator with class_weight='balanced' (e.g. LogisticRegression(class_weight="
        "'balanced')), resample the classes, and judge the model by f1 / roc_auc.")


def check_missing_values(X: pd.DataFrame) -> Guardrail | None:
    """Feature columns with missing values (most estimators refuse NaN)."""
    counts = X.isna().sum()
    missing = [f"{c} ({n})" for c, n in counts.items() if n]
    if not missing:
        return None
    return Guardrail(
        "missing_values", f"Missing values in {len(missing)} feature(s): {_listed(missing)}.",
        "Put an imputer in a Pipeline (make_pipeline(SimpleImputer(), estimator)), use an estimator "
        "that handles NaN (sklearn.ensemble.HistGradientBoostingClassifier/Regressor), or drop the rows.")


def _constant_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if X[c].nunique(dropna=False) <= 1]


def check_constant_columns(X: pd.DataFrame) -> Guardrail | None:
    """Columns with a single value: they cannot help the model."""
    constant = _constant_columns(X)
    if not constant:
        return None
    return Guardrail("constant_columns", f"Constant column(s): {_listed(constant)}.",
                     "Drop them: data.drop(columns=[...]).")


def _duplicate_groups(X: pd.DataFrame) -> list[list[str]]:
    skip = set(_constant_columns(X))
    by_hash: dict[bytes, list[str]] = {}
    for c in X.columns:
        if c in skip:
            continue
        key = pd.util.hash_pandas_object(X[c], index=False).to_numpy().tobytes()
        by_hash.setdefault(key, []).append(c)
    groups = []
    for names in by_hash.values():
        # Equal hashes are confirmed by comparing values.
        while len(names) > 1:
            first, rest = names[0], names[1:]
            same = [c for c in rest if X[first].equals(X[c])]
            if same:
                groups.append([first, *same])
            names = [c for c in rest if c not in same]
    return groups


def check_duplicate_columns(X: pd.DataFrame) -> Guardrail | None:
    """Columns holding identical values (constant columns are reported on their own)."""
    groups = _duplicate_groups(X)
    if not groups:
        return None
    listed = _listed([" = ".join(map(str, g)) for g in groups])
    return Guardrail("duplicate_columns", f"Duplicate columns (identical values): {listed}.",
                     "Keep one column of each group and drop the others.")


def _corr_rows(n_rows: int):
    """Positions of at most ``CORR_SAMPLE_ROWS`` rows (seeded) for the correlation checks."""
    if n_rows <= CORR_SAMPLE_ROWS:
        return slice(None)
    return np.sort(np.random.default_rng(0).choice(n_rows, CORR_SAMPLE_ROWS, replace=False))


def _numeric_features(X: pd.DataFrame) -> pd.DataFrame:
    """Numeric, non-constant features as float, on the ``_corr_rows`` of ``X``."""
    numeric = X.select_dtypes(include=["number", "bool"]).iloc[_corr_rows(len(X))]
    return numeric.drop(columns=_constant_columns(numeric)).astype(float)


def check_collinear_features(X: pd.DataFrame) -> Guardrail | None:
    """Pairs of numeric features with ``|corr| > COLLINEAR_CORR`` (duplicates are reported apart)."""
    numeric = _numeric_features(X)
    if numeric.shape[1] < 2:
        return None
    duplicates = {frozenset((a, b)) for g in _duplicate_groups(numeric) for a in g for b in g}
    corr = numeric.corr().to_numpy()
    names = list(numeric.columns)
    pairs = []
    for i, j in zip(*np.triu_indices(len(names), k=1)):
        r = corr[i, j]
        if abs(r) > COLLINEAR_CORR and frozenset((names[i], names[j])) not in duplicates:
            pairs.append(f"{names[i]} ~ {names[j]} (r={r:.3f})")
    if not pairs:
        return None
    return Guardrail(
        "collinear_features", f"Highly collinear features (|r| > {COLLINEAR_CORR}): {_listed(pairs)}.",
        "Drop one feature of each pair, or use a regularised model (Ridge, Lasso, tree ensembles).")


def _same_values(a: pd.Series, b: pd.Series) -> bool:
    left, right = a.to_numpy(), b.to_numpy()
    missing = pd.isna(left)
    if not np.array_equal(missing, pd.isna(right)):
        return False
    try:
        return bool(np.all(left[~missing] == right[~missing]))
    except (TypeError, ValueError):
        return False


def check_target_leakage(X: pd.DataFrame, y: pd.Series, task: str) -> Guardrail | None:
    """Features that give the answer away.

    A feature leaks when it holds the target's values, when (regression) it is numeric with
    ``|corr| >= LEAK_CORR`` with the target, or when (classification) each of its values maps to
    exactly one class while values repeat (fewer distinct values than ``ID_LIKE_SHARE`` of the
    rows: an identifier column maps to one class per row too, and that is not a leak).
    """
    leaks: dict[str, str] = {}
    for c in X.columns:
        if _same_values(X[c], y):
            leaks[c] = "same values as the target"
    if task == "regression" and pd.api.types.is_numeric_dtype(y) and not _is_text(y):
        numeric = _numeric_features(X.drop(columns=list(leaks)))
        target = y.iloc[_corr_rows(len(y))].to_numpy(dtype=float)
        if np.nanstd(target) > 0:
            for c in numeric.columns:
                r = pd.Series(numeric[c].to_numpy()).corr(pd.Series(target))
                if abs(r) >= LEAK_CORR:
                    leaks[c] = f"r={r:.3f} with the target"
    if task == "classification":
        known = y.notna().to_numpy()
        labels = pd.Series(y.to_numpy()[known])
        for c in X.columns:
            if c in leaks:
                continue
            values = X[c].to_numpy()[known]
            distinct = pd.Series(values).nunique()
            if distinct < 2 or distinct >= ID_LIKE_SHARE * known.sum():
                continue
            if labels.groupby(values, observed=True).nunique().max() == 1:
                leaks[c] = "each value maps to exactly one class"
    if not leaks:
        return None
    listed = _listed([f"{c} ({why})" for c, why in leaks.items()])
    return Guardrail(
        "target_leakage", f"Possible target leakage: {listed}.",
        "Drop features that are computed from the target or known only after it; "
        "a score near perfect is the tell.")


def check_row_count(n_rows: int) -> Guardrail | None:
    """Fewer than ``MIN_ROWS`` rows: the test score will be noise."""
    if n_rows >= MIN_ROWS:
        return None
    return Guardrail("too_few_rows", f"Only {n_rows} rows; the test score on so few is mostly noise.",
                     "Collect more data, and compare models with cross-validation "
                     "(sklearn.model_selection.cross_val_score) rather than one split.")


def non_numeric_columns(X: pd.DataFrame) -> list[str]:
    """Feature columns an estimator cannot take as they are (text, category, dates...)."""
    return [c for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c]) or isinstance(X[c].dtype, pd.CategoricalDtype)]


def check_non_numeric(X: pd.DataFrame, encode: str | None) -> Guardrail | None:
    """Non-numeric features without an encoder (``encode=None``)."""
    columns = non_numeric_columns(X)
    if not columns or encode is not None:
        return None
    return Guardrail("non_numeric_features", f"Non-numeric feature(s): {_listed(columns)}.",
                     "Pass encode='onehot' or encode='ordinal' (--encode onehot|ordinal), "
                     "or drop or convert those columns.")


def find_guardrails(X: pd.DataFrame, y: pd.Series, task: str, *,
                    encode: str | None = None, check_encoding: bool = True) -> list[Guardrail]:
    """Every guardrail that fires on features ``X`` and target ``y`` for ``task``.

    ``check_encoding=False`` skips the non-numeric check, for fit functions that encode themselves.
    """
    found = [check_target_type(y, task), check_class_imbalance(y, task), check_missing_values(X),
             check_constant_columns(X), check_duplicate_columns(X), check_collinear_features(X),
             check_target_leakage(X, y, task), check_row_count(len(X))]
    if check_encoding:
        found.append(check_non_numeric(X, encode))
    return [g for g in found if g is not None]


# -- the data -----------------------------------------------------------------------------------

def sample_rows(data: pd.DataFrame, sample: int | None, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """``sample`` rows of ``data`` drawn with ``seed`` (the same rows every time), and a note."""
    if sample is None:
        return data, []
    if sample >= len(data):
        return data, [f"--sample {sample} is not less than the {len(data)} rows; trained on all rows."]
    return data.sample(n=sample, random_state=seed), [
        f"Trained on a sample of {sample} of {len(data)} rows (--sample); "
        "drop --sample for the final model."]


def split_data(X: pd.DataFrame, y: pd.Series, task: str, test_size: float = 0.25, seed: int = 0):
    """``(X_train, X_test, y_train, y_test, notes)``: a seeded split, stratified by class for
    classification when every class has at least two rows and both sides can hold every class."""
    from sklearn.model_selection import train_test_split

    n = len(X)
    n_test = math.ceil(test_size * n)
    if n < 2 or n_test < 1 or n - n_test < 1:
        raise TrainError(f"Too few rows to split: {n} row(s) with test_size={test_size} leave an empty "
                         "train or test set. Use more rows or another test_size.")
    stratify, notes = None, []
    if task == "classification":
        counts = y.value_counts()
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            stratify = y
        else:
            notes.append("The split is not stratified: some class has fewer than 2 rows, or the "
                         "split is too small to hold every class.")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=stratify)
    return X_train, X_test, y_train, y_test, notes


# -- the estimator ------------------------------------------------------------------------------

def _torch_module_class():
    # An nn.Module instance means torch is imported already; never import it just to check.
    torch = sys.modules.get("torch")
    return torch.nn.Module if torch is not None else None


def _is_sklearn_like(obj: Any) -> bool:
    return hasattr(obj, "fit") and hasattr(obj, "predict") and not isinstance(obj, type)


def resolve_estimator(estimator: Any, user_ns: dict | None = None) -> tuple[str, Any]:
    """``(kind, estimator)`` with kind ``"sklearn"``, ``"torch"`` or ``"function"``.

    A string is a name in ``user_ns`` or an import path; a class is instantiated without
    arguments; sklearn estimators are cloned and torch modules copied, so the caller's object
    is never fitted in place.
    """
    if isinstance(estimator, str):
        if user_ns is not None and estimator in user_ns:
            estimator = user_ns[estimator]
        else:
            estimator = _import_path(estimator)
    module_class = _torch_module_class()
    if isinstance(estimator, type):
        if not (hasattr(estimator, "fit") or (module_class and issubclass(estimator, module_class))):
            raise TrainError(f"{estimator.__name__} is a class but not an estimator: {ESTIMATOR_HELP}.")
        try:
            estimator = estimator()
        except TypeError as e:
            raise TrainError(f"{estimator.__name__}() needs arguments ({e}): create it in a cell "
                             "and pass the variable.") from None
    if module_class is not None and isinstance(estimator, module_class):
        return "torch", copy.deepcopy(estimator)
    if _is_sklearn_like(estimator):
        from sklearn.base import clone

        try:
            return "sklearn", clone(estimator)
        except TypeError:
            return "sklearn", copy.deepcopy(estimator)
    if callable(estimator):
        return "function", estimator
    raise TrainError(f"Cannot train a {type(estimator).__name__}: {ESTIMATOR_HELP}.")


def _import_path(path: str) -> Any:
    module_name, _, attr = path.strip().rpartition(".")
    try:
        if not module_name:
            raise ImportError(path)
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise TrainError(f"No estimator '{path}': {ESTIMATOR_HELP}.") from None


def _estimator_name(kind: str, estimator: Any) -> str:
    if kind == "function":
        return getattr(estimator, "__qualname__", None) or type(estimator).__name__
    return type(estimator).__name__


def _declared_task(kind: str, estimator: Any) -> str | None:
    if kind != "sklearn":
        return None
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(estimator):
            return "classification"
        if is_regressor(estimator):
            return "regression"
    except (AttributeError, TypeError):
        pass
    return None


def build_encoding_pipeline(estimator: Any, X: pd.DataFrame, encode: str | None):
    """``estimator`` behind a ColumnTransformer that encodes the non-numeric columns of ``X``
    (numeric ones pass through); ``estimator`` itself when there is nothing to encode."""
    columns = non_numeric_columns(X)
    if encode is None or not columns:
        return estimator
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if encode == "onehot":
        # Dense output: many estimators (HistGradientBoosting...) refuse sparse input.
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    else:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    transformer = ColumnTransformer([("encode", encoder, columns)], remainder="passthrough")
    return Pipeline([("encode", transformer), ("model", estimator)])


# -- torch --------------------------------------------------------------------------------------

class TorchModel:
    """A fitted torch module with a scikit-learn style ``predict`` on DataFrames.

    ``module`` is the trained ``nn.Module``; regression predicts its single output, classification
    the class of its largest logit (``classes_`` maps output positions to labels).
    """

    def __init__(self, module, features: list[str], task: str, classes=None):
        self.module = module
        self.features = list(features)
        self.task = task
        self.classes_ = classes

    def _outputs(self, X: pd.DataFrame) -> np.ndarray:
        import torch

        device = next(self.module.parameters(), torch.empty(0)).device
        inputs = torch.as_tensor(X[self.features].to_numpy(dtype=np.float32), device=device)
        self.module.eval()
        with torch.no_grad():
            return self.module(inputs).cpu().numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        out = self._outputs(X)
        if self.task == "regression":
            return out.reshape(len(X))
        return np.asarray(self.classes_)[out.argmax(axis=1)]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("predict_proba is for classification")
        out = self._outputs(X)
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)


def fit_torch(module, X: pd.DataFrame, y: pd.Series, task: str, *, epochs: int = 10, lr: float = 1e-3,
              batch_size: int = 64, seed: int = 0,
              on_epoch: Callable[[int, float], None] | None = None) -> tuple[TorchModel, list[float]]:
    """Train ``module`` in place with Adam (MSE for regression, cross-entropy on class indices for
    classification), on CUDA when available. Returns the model and the mean loss of each epoch."""
    import torch

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device)
    features = X.to_numpy(dtype=np.float32)
    classes = None
    if task == "classification":
        classes, codes = np.unique(y.to_numpy(), return_inverse=True)
        target = torch.as_tensor(codes, dtype=torch.long)
        loss_fn = torch.nn.functional.cross_entropy
    else:
        target = torch.as_tensor(y.to_numpy(dtype=np.float32))
        loss_fn = torch.nn.functional.mse_loss
    inputs = torch.as_tensor(features)
    _check_torch_output(module, inputs[:2].to(device), task, classes)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        module.train()
        total = 0.0
        for batch in torch.randperm(len(inputs), generator=generator).split(batch_size):
            xb, yb = inputs[batch].to(device), target[batch].to(device)
            out = module(xb)
            if task == "regression":
                out = out.reshape(len(xb))
            loss = loss_fn(out, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(inputs))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return TorchModel(module, list(X.columns), task, classes), history


def _check_torch_output(module, sample, task: str, classes) -> None:
    import torch

    module.eval()  # no batch-norm statistics from this probe
    with torch.no_grad():
        shape = tuple(module(sample).shape)
    want = (len(sample), len(classes)) if task == "classification" else (len(sample), 1)
    if shape != want and not (task == "regression" and shape == (len(sample),)):
        need = (f"{len(classes)} logits per row (one per class)" if task == "classification"
                else "one value per row")
        raise TrainError(f"The module outputs shape {shape} for {len(sample)} rows; {task} needs {need}.")


# -- scoring and plots --------------------------------------------------------------------------

def score(task: str, model: Any, X_test: pd.DataFrame, y_test: pd.Series,
          predictions: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Test-split metrics: accuracy, f1 (f1_macro for multiclass) and roc_auc (when the model has
    predict_proba) for classification; rmse, mae and r2 for regression. Also notes on skipped ones."""
    from sklearn import metrics as m

    notes: list[str] = []
    if task == "regression":
        return {"rmse": float(m.root_mean_squared_error(y_test, predictions)),
                "mae": float(m.mean_absolute_error(y_test, predictions)),
                "r2": float(m.r2_score(y_test, predictions))}, notes
    labels = np.unique(np.concatenate([np.asarray(y_test), np.asarray(predictions)]))
    classes = getattr(model, "classes_", None)
    if classes is None:
        classes = labels
    result = {"accuracy": float(m.accuracy_score(y_test, predictions))}
    if len(classes) <= 2:
        result["f1"] = float(m.f1_score(y_test, predictions, pos_label=classes[-1], average="binary"))
    else:
        result["f1_macro"] = float(m.f1_score(y_test, predictions, average="macro"))
    if hasattr(model, "predict_proba"):
        try:
            proba = model.predict_proba(X_test)
            if len(classes) == 2:
                result["roc_auc"] = float(m.roc_auc_score(np.asarray(y_test) == classes[1], proba[:, 1]))
            else:
                result["roc_auc"] = float(m.roc_auc_score(y_test, proba, multi_class="ovr",
                                                          average="macro", labels=list(classes)))
        except (ValueError, IndexError) as e:
            notes.append(f"roc_auc skipped: {e}")
    return result, notes


def plot_results(task: str, y_test: pd.Series, predictions: np.ndarray):
    """A confusion matrix (classification) or a residual plot (regression) as a matplotlib
    ``Figure``, drawn without pyplot so the session's backend is left alone."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.add_subplot()
    truth, predicted = np.asarray(y_test), np.asarray(predictions)
    if task == "classification":
        from sklearn.metrics import confusion_matrix

        labels = np.unique(np.concatenate([truth, predicted]))
        matrix = confusion_matrix(truth, predicted, labels=labels)
        image = ax.imshow(matrix, cmap="Blues")
        fig.colorbar(image, ax=ax)
        ticks = np.arange(len(labels))
        ax.set_xticks(ticks, [str(label) for label in labels], rotation=45, ha="right")
        ax.set_yticks(ticks, [str(label) for label in labels])
        threshold = matrix.max() / 2 if matrix.size else 0
        # Counts in the cells while they stay legible.
        for i, j in np.ndindex(matrix.shape if len(labels) <= 20 else (0, 0)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix (test split)")
    else:
        residuals = truth.astype(float) - predicted.astype(float)
        ax.scatter(predicted, residuals, s=10, alpha=0.6)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("residual (true - predicted)")
        ax.set_title("Residuals (test split)")
    return fig


# -- mlflow -------------------------------------------------------------------------------------

def _max_param_length() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:  # pragma: no cover - older or newer layouts
        return 6000
    return MAX_PARAM_VAL_LENGTH


def estimator_params(estimator: Any) -> dict[str, str]:
    """``get_params()`` as MLflow params: values stringified and cut to MLflow's length limit;
    nested estimators are skipped (their own params appear as ``<name>__<param>``) and lists of
    ``(name, estimator)`` steps are logged as their names."""
    get_params = getattr(estimator, "get_params", None)
    if get_params is None:
        return {}
    try:
        params = get_params(deep=True)
    except TypeError:
        params = get_params()
    limit = _max_param_length()
    logged = {}
    for name, value in params.items():
        if hasattr(value, "get_params") or (callable(value) and not isinstance(value, type)):
            continue
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, tuple) and len(v) >= 2 and hasattr(v[1], "get_params") for v in value):
            value = [v[0] for v in value]
        logged[str(name)] = str(value)[:limit]
    return logged


def _requirement(dist: str) -> str:
    # A local version label (torch "2.13.0+cpu") is not installable from an index.
    return f"{dist}=={importlib.metadata.version(dist).split('+')[0]}"


#: Packages whose types a skops-saved model may hold; anything else is saved with cloudpickle.
SKOPS_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")


def skops_trusted_types(model) -> list[str] | None:
    """The types skops must be told to trust to load ``model``, or None when the model holds a
    type from outside ``SKOPS_TRUSTED_PACKAGES`` (a user's class) or skops cannot save it."""
    try:
        import skops.io
    except ImportError:
        return None
    try:
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception:  # skops refuses what it cannot represent (lambdas, local classes...)
        return None
    if all(t.split(".")[0] in SKOPS_TRUSTED_PACKAGES for t in untrusted):
        return untrusted
    return None


def _log_sklearn_model(mlflow, model, X_example, signature, notes: list[str]):
    requirements = [_requirement("scikit-learn"), _requirement("pandas"), _requirement("numpy")]
    trusted = skops_trusted_types(model)
    if trusted is not None:
        # skops loads without running pickled code; sklearn's own types (trees...) it must be told.
        return mlflow.sklearn.log_model(
            model, name="model", serialization_format="skops", skops_trusted_types=trusted or None,
            signature=signature, input_example=X_example,
            pip_requirements=[*requirements, _requirement("skops")])
    notes.append("The model was saved with cloudpickle: it holds classes skops does not load safely.")
    return mlflow.sklearn.log_model(
        model, name="model", serialization_format="cloudpickle", signature=signature,
        input_example=X_example, pip_requirements=[*requirements, _requirement("cloudpickle")])


def _log_pyfunc_model(mlflow, model, X_example, signature):
    # A class made here is pickled by value, so loading the model does not need himalia installed.
    class PredictModel(mlflow.pyfunc.PythonModel):
        def __init__(self, fitted):
            self.fitted = fitted

        # The DataFrame hint tells mlflow the signature comes from the data, not from hints.
        def predict(self, context, model_input: pd.DataFrame, params=None):
            return self.fitted.predict(model_input)

    requirements = [_requirement("cloudpickle"), _requirement("pandas"), _requirement("numpy")]
    return mlflow.pyfunc.log_model(name="model", python_model=PredictModel(model), signature=signature,
                                   input_example=X_example, pip_requirements=requirements)


def _log_torch_model(mlflow, model: TorchModel, X_example: pd.DataFrame, notes: list[str]):
    from mlflow.models import infer_signature

    module = model.module.to("cpu")
    example = X_example[model.features].to_numpy(dtype=np.float32)
    signature = infer_signature(example, model._outputs(X_example))
    requirements = [_requirement("torch"), _requirement("numpy")]
    try:
        # pt2 (torch.export) loads without running pickled code and without the module's class.
        return mlflow.pytorch.log_model(module, name="model", serialization_format="pt2",
                                        input_example=example, signature=signature,
                                        pip_requirements=requirements)
    except Exception as e:  # torch.export rejects some modules (data-dependent control flow...)
        notes.append(f"The module was pickled: torch.export failed ({type(e).__name__}); loading it "
                     "needs the module's class importable.")
        return mlflow.pytorch.log_model(module, name="model", serialization_format="pickle",
                                        input_example=example, signature=signature,
                                        pip_requirements=[*requirements, _requirement("cloudpickle")])


def _experiment_id(mlflow, experiment: str | None) -> str | None:
    """The id of experiment ``experiment`` (created if missing), without changing the
    session's active experiment as ``mlflow.set_experiment`` would."""
    if experiment is None:
        return None
    found = mlflow.get_experiment_by_name(experiment)
    return found.experiment_id if found is not None else mlflow.create_experiment(experiment)


# -- train --------------------------------------------------------------------------------------

def _validate(data, target, task, test_size, sample, encode, epochs, lr, batch_size) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TrainError(f"data must be a pandas DataFrame, not {type(data).__name__}.")
    if data.empty or data.shape[1] == 0:
        raise TrainError("The DataFrame is empty: load some rows first.")
    if target not in data.columns:
        raise TrainError(f"No target column '{target}'; the columns are: {_listed(list(map(str, data.columns)))}.")
    if data.shape[1] < 2:
        raise TrainError(f"There are no feature columns besides the target '{target}'.")
    if task not in TASKS:
        raise TrainError(f"Unknown task {task!r}: use one of {', '.join(TASKS)}.")
    if encode not in ENCODERS:
        raise TrainError(f"Unknown encode {encode!r}: use None, 'onehot' or 'ordinal'.")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise TrainError(f"test_size must be a fraction with 0 < test_size < 1 (e.g. 0.25), not {test_size!r}.")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, (int, np.integer))
                               or sample < 1):
        raise TrainError(f"sample must be a positive whole number of rows, not {sample!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise TrainError(f"{name} must be a positive whole number, not {value!r}.")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise TrainError(f"lr must be a positive number, not {lr!r}.")


def train(estimator, data: pd.DataFrame, target: str, *, task: str = "auto", test_size: float = 0.25,
          seed: int = 0, sample: int | None = None, encode: str | None = None, epochs: int = 10,
          lr: float = 1e-3, batch_size: int = 64, run_name: str | None = None,
          experiment: str | None = None, tags: dict | None = None, user_ns: dict | None = None,
          log: bool = True) -> TrainResult:
    """Fit ``estimator`` to predict column ``target`` of ``data``, score it on a held-out split,
    and (``log=True``) record params, metrics, the plot, the guardrails and the model in MLflow.

    ``estimator`` is an import path (``"sklearn.linear_model.LogisticRegression"``), a name in
    ``user_ns``, an unfitted scikit-learn estimator, a ``torch.nn.Module`` or a function
    ``fit(train_df, test_df) -> model`` (the frames include the target; the model needs
    ``predict``). ``task="auto"`` takes the estimator's own kind (classifier or regressor) when it
    has one, else ``infer_task(target)``. Rows with a missing target are dropped first. ``sample``
    trains on that many rows drawn with ``seed``. ``encode`` ("onehot" or "ordinal") encodes
    non-numeric features inside a Pipeline. ``epochs``, ``lr`` and ``batch_size`` are for torch.

    Guardrails are returned in the result and also issued as ``TrainWarning``. Mistakes in the
    arguments raise ``TrainError``. With ``log=True`` the run uses the configured tracking URI,
    ``experiment`` by name (created if missing) or the active one, ``run_name`` and ``tags``; it
    ends FAILED and the error is raised again when fitting fails. Tag ``himalia.model_uri`` (and
    ``result.model_uri``) is a URI ``mlflow.pyfunc.load_model`` loads.
    """
    _validate(data, target, task, test_size, sample, encode, epochs, lr, batch_size)
    kind, model = resolve_estimator(estimator, user_ns)
    name = _estimator_name(kind, model)
    notes: list[str] = []

    known = data[data[target].notna()]
    if known.empty:
        raise TrainError(f"The target '{target}' is missing on every row: pick another target column.")
    if len(known) < len(data):
        notes.append(f"Dropped {len(data) - len(known)} row(s) with a missing target '{target}'.")
    n_rows = len(known)
    known, sample_notes = sample_rows(known, sample, seed)
    notes += sample_notes
    X, y = known.drop(columns=[target]), known[target]

    if task == "auto":
        task = _declared_task(kind, model) or infer_task(y)
    if task == "classification" and y.nunique() < 2:
        raise TrainError(f"The target '{target}' has a single class ({y.iloc[0]!r}): "
                         "classification needs at least two.")

    guardrails = find_guardrails(X, y, task, encode=encode, check_encoding=kind != "function")
    for g in guardrails:
        warnings.warn(f"{g.message} Fix: {g.fix}", TrainWarning, stacklevel=2)
    if task == "regression" and _is_text(y):
        raise TrainError(f"The target '{target}' holds labels; regression needs numbers: "
                         "use task='classification' (--task classification).")
    non_numeric = non_numeric_columns(X)
    if non_numeric and kind == "sklearn" and encode is None:
        raise TrainError(f"Non-numeric feature(s) {_listed(non_numeric)}: pass encode='onehot' or "
                         "encode='ordinal' (--encode onehot|ordinal), or drop those columns.")
    if non_numeric and kind == "torch":
        raise TrainError(f"A torch module takes numeric features only; non-numeric: {_listed(non_numeric)}. "
                         "Encode or drop those columns first.")
    if encode is not None and kind == "function":
        notes.append("encode is ignored for a fit function: it gets the raw frames.")

    X_train, X_test, y_train, y_test, split_notes = split_data(X, y, task, test_size, seed)
    notes += split_notes
    params = {**estimator_params(model), "himalia.task": task, "himalia.test_size": test_size,
              "himalia.seed": seed, "himalia.sample": sample, "himalia.rows": n_rows,
              "himalia.features": X.shape[1], "himalia.target": target, "himalia.estimator": name,
              "himalia.encode": encode}
    if kind == "torch":
        params.update({"himalia.epochs": epochs, "himalia.lr": lr, "himalia.batch_size": batch_size})

    fit = _Fit(kind, model, task, encode, X_train, X_test, y_train, y_test, target,
               dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed), notes)
    result_args = dict(task=task, guardrails=guardrails, notes=notes, n_train=len(X_train),
                       n_test=len(X_test), estimator_name=name)
    if not log:
        fit.run()
        return TrainResult(model=fit.fitted, metrics=fit.metrics, figure=fit.figure, run_id=None,
                           model_uri=None, history=fit.history, **result_args)

    import mlflow

    experiment_id = _experiment_id(mlflow, experiment)
    run_tags = {"himalia.estimator": name, **_label_tags(data), **(tags or {})}
    limit = _max_param_length()
    with mlflow.start_run(run_name=run_name, experiment_id=experiment_id, tags=run_tags,
                          nested=mlflow.active_run() is not None) as run:
        mlflow.log_params({k: str(v)[:limit] for k, v in params.items()})
        fit.run(on_epoch=lambda epoch, loss: mlflow.log_metric("train_loss", loss, step=epoch))
        mlflow.log_metrics({**fit.metrics, "guardrails": len(guardrails)})
        artifact = "plots/confusion_matrix.png" if task == "classification" else "plots/residuals.png"
        mlflow.log_figure(fit.figure, artifact)
        mlflow.log_dict([asdict(g) for g in guardrails], "guardrails.json")
        info = fit.log_model(mlflow)
        mlflow.set_tag("himalia.model_uri", info.model_uri)
    return TrainResult(model=fit.fitted, metrics=fit.metrics, figure=fit.figure, run_id=run.info.run_id,
                       model_uri=info.model_uri, experiment_id=run.info.experiment_id,
                       history=fit.history, **result_args)


def _label_tags(data: pd.DataFrame) -> dict:
    """The label snapshot ``data`` came from (``labels.to_frame()``), for the run's lineage."""
    from .labels import ATTR, run_tags

    info = getattr(data, "attrs", {}).get(ATTR)
    return run_tags(info) if info else {}


class _Fit:
    """One fit of one estimator on one split: ``run()`` fits and scores, ``log_model()`` logs."""

    def __init__(self, kind, model, task, encode, X_train, X_test, y_train, y_test, target,
                 torch_args, notes):
        self.kind, self.model, self.task, self.encode = kind, model, task, encode
        self.X_train, self.X_test, self.y_train, self.y_test = X_train, X_test, y_train, y_test
        self.target, self.torch_args, self.notes = target, torch_args, notes
        self.fitted = None
        self.history: dict[str, list[float]] = {}

    def run(self, on_epoch=None) -> None:
        if self.kind == "sklearn":
            self.fitted = build_encoding_pipeline(self.model, self.X_train, self.encode)
            self.fitted.fit(self.X_train, self.y_train)
        elif self.kind == "torch":
            self.fitted, losses = fit_torch(self.model, self.X_train, self.y_train, self.task,
                                            on_epoch=on_epoch, **self.torch_args)
            self.history = {"train_loss": losses}
        else:
            self.fitted = self.model(self._with_target(self.X_train, self.y_train),
                                     self._with_target(self.X_test, self.y_test))
            if not hasattr(self.fitted, "predict"):
                raise TrainError(f"The fit function returned a {type(self.fitted).__name__}; "
                                 "it must return a fitted model with a predict method.")
        self.predictions = np.asarray(self.fitted.predict(self.X_test))
        self.metrics, score_notes = score(self.task, self.fitted, self.X_test, self.y_test,
                                          self.predictions)
        self.notes += score_notes
        self.figure = plot_results(self.task, self.y_test, self.predictions)

    def _with_target(self, X: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
        frame = X.copy()
        frame[self.target] = y
        return frame

    def log_model(self, mlflow):
        from mlflow.models import infer_signature
        from sklearn.base import BaseEstimator

        example = self.X_train.head(5)
        if self.kind == "torch":
            return _log_torch_model(mlflow, self.fitted, example, self.notes)
        signature = infer_signature(self.X_test, self.predictions)
        if isinstance(self.fitted, BaseEstimator):
            return _log_sklearn_model(mlflow, self.fitted, example, signature, self.notes)
        return _log_pyfunc_model(mlflow, self.fitted, example, signature)
