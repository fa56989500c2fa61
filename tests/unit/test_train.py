"""``himalia.sdk.train``: the engine behind ``%train``.

Each guardrail fires on a frame built to trigger it and stays quiet on a clean one; mistakes raise
``TrainError`` with a message saying what to do; whole runs land in a throwaway SQLite MLflow store
and the logged model loads back and predicts what the fitted one does.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from himalia.sdk.train import (Guardrail, TrainError, TrainResult, TrainWarning, check_class_imbalance,
                               check_collinear_features, check_constant_columns,
                               check_duplicate_columns, check_missing_values, check_non_numeric,
                               check_row_count, check_target_leakage, check_target_type,
                               estimator_params, find_guardrails, infer_task, run_url, sample_rows,
                               split_data, train)

N = 300


def classification_frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    """Two informative features, one noise feature, a balanced noisy 0/1 target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "noise": rng.integers(0, 100, size=n)})
    frame["y"] = (frame.a + frame.b + rng.normal(scale=0.7, size=n) > 0).astype(int)
    return frame


def regression_frame(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["t"] = 3 * frame.a - frame.b + rng.normal(size=n)
    return frame


def features(frame: pd.DataFrame, target: str):
    return frame.drop(columns=[target]), frame[target]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A SQLite tracking store with an experiment whose artifacts stay in a temp dir; the
    previous tracking URI is put back afterwards."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        try:
            mlflow.create_experiment("himalia-train-tests", artifact_location=(root / "artifacts").as_uri())
            yield "himalia-train-tests"
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.fixture(autouse=True)
def no_telemetry(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def quiet_train(*args, **kwargs):
    """``train`` with its guardrail warnings silenced (the tests about them check the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainWarning)
        return train(*args, **kwargs)


# -- guardrails ---------------------------------------------------------------------------------

def test_clean_frames_raise_no_guardrail():
    X, y = features(classification_frame(), "y")
    assert find_guardrails(X, y, "classification") == []
    X, y = features(regression_frame(), "t")
    assert find_guardrails(X, y, "regression") == []


def test_text_target_for_regression_is_flagged():
    y = pd.Series(["cat", "dog"] * 50, name="animal")
    found = check_target_type(y, "regression")
    assert found.check == "target_type" and "classification" in found.fix
    assert check_target_type(y, "classification") is None


def test_continuous_target_for_classification_is_flagged():
    y = pd.Series(np.random.default_rng(0).normal(size=200), name="price")
    found = check_target_type(y, "classification")
    assert found.check == "target_type" and "regression" in found.fix
    assert check_target_type(pd.Series([0, 1, 2] * 50), "classification") is None


def test_class_imbalance_is_flagged():
    y = pd.Series([0] * 190 + [1] * 10, name="churn")
    found = check_class_imbalance(y, "classification")
    assert found.check == "class_imbalance" and "'1'" in found.message
    assert "class_weight='balanced'" in found.fix
    assert check_class_imbalance(pd.Series([0, 1] * 100), "classification") is None
    assert check_class_imbalance(y, "regression") is None


def test_missing_values_name_the_columns():
    X, _ = features(classification_frame(), "y")
    X.loc[:4, "b"] = np.nan
    found = check_missing_values(X)
    assert found.check == "missing_values" and "b (5)" in found.message and "a (" not in found.message
    assert "SimpleImputer" in found.fix and "HistGradientBoosting" in found.fix


def test_constant_columns_are_flagged():
    X, _ = features(classification_frame(), "y")
    X["source"] = "web"
    found = check_constant_columns(X)
    assert found.check == "constant_columns" and "source" in found.message


def test_duplicate_columns_are_flagged_but_not_as_collinear():
    X, _ = features(classification_frame(), "y")
    X["a_copy"] = X["a"]
    found = check_duplicate_columns(X)
    assert found.check == "duplicate_columns" and "a = a_copy" in found.message
    assert check_collinear_features(X) is None


def test_collinear_features_name_the_pair():
    X, _ = features(regression_frame(), "t")
    X["a_cm"] = X["a"] * 100 + np.random.default_rng(1).normal(scale=5, size=len(X))
    found = check_collinear_features(X)
    assert found.check == "collinear_features" and "a ~ a_cm" in found.message


def test_feature_correlated_with_a_numeric_target_leaks():
    X, y = features(regression_frame(), "t")
    X["t_next"] = y * 2 + 0.001
    found = check_target_leakage(X, y, "regression")
    assert found.check == "target_leakage" and "t_next" in found.message and "a (" not in found.message


def test_copy_of_the_target_leaks():
    X, y = features(classification_frame(), "y")
    X["label"] = y
    assert "label (same values as the target)" in check_target_leakage(X, y, "classification").message


def test_feature_that_determines_the_class_leaks_but_an_id_does_not():
    X, y = features(classification_frame(), "y")
    # Three codes, each used by one class only: the outcome written down after the fact.
    X["status"] = np.where(y == 1, "won", np.where(X.index % 2 == 0, "lost", "dropped"))
    X["row_id"] = np.arange(len(X))
    found = check_target_leakage(X, y, "classification")
    assert "status (each value maps to exactly one class)" in found.message
    assert "row_id" not in found.message


def test_too_few_rows_are_flagged():
    found = check_row_count(30)
    assert found.check == "too_few_rows" and "cross-validation" in found.fix
    assert check_row_count(50) is None


def test_text_columns_without_an_encoder_are_flagged():
    X, _ = features(classification_frame(), "y")
    X["city"] = np.where(X.index % 2 == 0, "Oslo", "Lima")
    found = check_non_numeric(X, None)
    assert found.check == "non_numeric_features" and "city" in found.message and "--encode" in found.fix
    assert check_non_numeric(X, "onehot") is None


# -- task, sample, split ------------------------------------------------------------------------

@pytest.mark.parametrize("values, task", [
    ([True, False] * 50, "classification"),
    (["a", "b", "c"] * 50, "classification"),
    (pd.Categorical(["x", "y"] * 50), "classification"),
    ([0, 1, 2] * 100, "classification"),
    ([0.0, 1.0, np.nan] * 50, "classification"),
    (list(range(300)), "regression"),
    ([0, 1, 2, 3, 4] * 10, "regression"),
    (np.linspace(0, 1, 100), "regression"),
])
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


def test_auto_task_follows_the_estimator_kind():
    frame = classification_frame()
    result = quiet_train("sklearn.linear_model.LinearRegression", frame, "y", log=False)
    assert result.task == "regression" and set(result.metrics) == {"rmse", "mae", "r2"}


def test_split_is_stratified_for_classification():
    y = pd.Series([0] * 320 + [1] * 80, name="y")
    X = pd.DataFrame({"x": np.arange(400)})
    X_train, X_test, y_train, y_test, notes = split_data(X, y, "classification", 0.25, seed=3)
    assert (len(X_train), len(X_test)) == (300, 100)
    assert y_test.mean() == pytest.approx(0.2) and y_train.mean() == pytest.approx(0.2)
    assert notes == []


def test_split_is_not_stratified_with_a_singleton_class():
    y = pd.Series([0] * 50 + [1] * 49 + [2], name="y")
    *_, notes = split_data(pd.DataFrame({"x": range(100)}), y, "classification")
    assert "not stratified" in notes[0]


def test_sample_is_reproducible_and_noted():
    frame = classification_frame()
    first, notes = sample_rows(frame, 100, seed=7)
    again, _ = sample_rows(frame, 100, seed=7)
    other, _ = sample_rows(frame, 100, seed=8)
    assert list(first.index) == list(again.index) != list(other.index)
    assert notes == ["Trained on a sample of 100 of 300 rows (--sample); drop --sample for the final model."]


def test_train_on_a_sample():
    result = quiet_train("sklearn.linear_model.LogisticRegression", classification_frame(), "y",
                         sample=120, log=False)
    assert result.n_train + result.n_test == 120
    assert any("sample of 120 of 300" in note for note in result.notes)


# -- mistakes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(estimator="sklearn.foo.Bar"), "No estimator 'sklearn.foo.Bar': give an import path like "
     "sklearn.ensemble.RandomForestClassifier, an estimator variable, a torch nn.Module or a "
     "fit(train_df, test_df) function"),
    (dict(estimator=42), "Cannot train a int"),
    (dict(target="label"), "No target column 'label'; the columns are: a, b, noise, y"),
    (dict(data=pd.DataFrame(columns=["a", "y"])), "empty"),
    (dict(data=pd.DataFrame({"a": [1.0, 2.0], "y": [np.nan, np.nan]})), "missing on every row"),
    (dict(test_size=0), "0 < test_size < 1"),
    (dict(test_size=1.5), "0 < test_size < 1"),
    (dict(sample=0), "sample must be a positive whole number"),
    (dict(sample=2.5), "sample must be a positive whole number"),
    (dict(task="clustering"), "use one of auto, classification, regression"),
    (dict(encode="hash"), "use None, 'onehot' or 'ordinal'"),
    (dict(data=pd.DataFrame({"a": [1.0], "y": [2.0]}), task="regression"), "Too few rows to split"),
])
def test_mistakes_raise_train_error(kwargs, message):
    args = dict(estimator="sklearn.linear_model.LogisticRegression", data=classification_frame(50),
                target="y")
    args.update(kwargs)
    with pytest.raises(TrainError) as error:
        quiet_train(args.pop("estimator"), args.pop("data"), args.pop("target"), log=False, **args)
    assert message in str(error.value)


def test_text_features_without_an_encoder_raise_after_the_guardrail():
    frame = classification_frame()
    frame["city"] = np.where(frame.index % 2 == 0, "Oslo", "Lima")
    with pytest.warns(TrainWarning, match="city"), pytest.raises(TrainError, match="encode='onehot'"):
        train("sklearn.linear_model.LogisticRegression", frame, "y", log=False)


def test_text_target_for_regression_raises():
    frame = classification_frame()
    frame["y"] = frame["y"].map({0: "no", 1: "yes"})
    with pytest.warns(TrainWarning), pytest.raises(TrainError, match="task='classification'"):
        train("sklearn.linear_model.Ridge", frame, "y", task="regression", log=False)


# -- estimators ---------------------------------------------------------------------------------

def test_estimator_by_name_in_the_user_namespace_is_cloned_not_fitted():
    from sklearn.tree import DecisionTreeClassifier

    mine = DecisionTreeClassifier(max_depth=2)
    result = quiet_train("tree", classification_frame(), "y", user_ns={"tree": mine}, log=False)
    assert result.model.get_params()["max_depth"] == 2
    assert not hasattr(mine, "tree_")


def test_multiclass_with_onehot_encoding():
    frame = classification_frame().drop(columns="noise")
    frame["y"] = pd.cut(frame.a + frame.b, [-np.inf, -0.5, 0.5, np.inf], labels=["lo", "mid", "hi"]).astype(str)
    frame["city"] = np.where(frame.index % 3 == 0, "Oslo", "Lima")
    result = quiet_train("sklearn.linear_model.LogisticRegression", frame, "y", encode="onehot", log=False)
    assert result.task == "classification"
    assert set(result.metrics) == {"accuracy", "f1_macro", "roc_auc"}
    assert result.model.predict(frame.head(3).drop(columns="y")).dtype == object
    assert isinstance(result.figure, Figure)


def test_duplicate_index_labels_do_not_matter():
    frame = classification_frame().set_index(np.repeat(np.arange(N // 3), 3))
    frame["label"] = frame["y"]
    with pytest.warns(TrainWarning, match="label"):
        result = train("sklearn.linear_model.LogisticRegression", frame, "y", log=False)
    assert result.n_train + result.n_test == N


def test_torch_classification_predicts_labels():
    import torch

    frame = classification_frame().drop(columns="noise")
    frame["y"] = frame["y"].map({0: "stay", 1: "churn"})
    result = quiet_train(torch.nn.Linear(2, 2), frame, "y", epochs=2, log=False)
    assert set(result.metrics) == {"accuracy", "f1", "roc_auc"}
    assert set(result.model.predict(frame.drop(columns="y"))) <= {"stay", "churn"}
    with pytest.raises(TrainError, match="needs 2 logits per row"):
        quiet_train(torch.nn.Linear(2, 1), frame, "y", log=False)


def test_estimator_params_are_strings_within_mlflow_limits():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    from sklearn.ensemble import BaggingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    params = estimator_params(BaggingClassifier(DecisionTreeClassifier(max_depth=3)))
    assert params["estimator__max_depth"] == "3" and "estimator" not in params
    params = estimator_params(make_pipeline(StandardScaler(), DecisionTreeClassifier()))
    assert params["steps"] == "['standardscaler', 'decisiontreeclassifier']"
    long = DecisionTreeClassifier(criterion="g" * 10_000)
    assert len(estimator_params(long)["criterion"]) == MAX_PARAM_VAL_LENGTH


def test_result_html_is_escaped_and_run_url():
    result = TrainResult(model=None, task="classification", metrics={"accuracy": 0.5},
                         guardrails=[Guardrail("x", "<script>alert(1)</script>", "fix & go")],
                         notes=["a <b> note"], figure=None, run_id=None, model_uri=None,
                         n_train=3, n_test=1, estimator_name="<Est>")
    page = result._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;Est&gt;" in page
    assert "accuracy: 0.5" in result.summary() and "guardrails: 1" in result.summary()
    assert run_url("http://mlflow:5000/", "3", "abc") == "http://mlflow:5000/#/experiments/3/runs/abc"


# -- whole runs in MLflow -----------------------------------------------------------------------

def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def test_classification_run_is_logged(tracking):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    frame = classification_frame()
    frame["city"] = np.where(frame.index % 2 == 0, "Oslo", "Lima")
    frame["source"] = "web"
    with pytest.warns(TrainWarning, match="Constant column"):
        result = train(LogisticRegression(C=0.5), frame, "y", encode="onehot", experiment=tracking,
                       run_name="first", tags={"team": "churn"})
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.tags["team"] == "churn" and run.data.tags["himalia.model_uri"] == result.model_uri
    assert run.data.params["C"] == "0.5" and run.data.params["himalia.task"] == "classification"
    assert run.data.params["himalia.rows"] == "300" and run.data.params["himalia.target"] == "y"
    assert set(run.data.metrics) == {"accuracy", "f1", "roc_auc", "guardrails"}
    assert run.data.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert "plots/confusion_matrix.png" in artifact_paths(client, result.run_id, "plots")
    logged = json.loads(open(client.download_artifacts(result.run_id, "guardrails.json")).read())
    assert [g["check"] for g in logged] == ["constant_columns"] and run.data.metrics["guardrails"] == 1
    X = frame.drop(columns="y")
    loaded = mlflow.pyfunc.load_model(result.model_uri)
    assert (np.asarray(loaded.predict(X)) == result.model.predict(X)).all()


def test_regression_run_is_logged(tracking):
    import mlflow

    frame = regression_frame()
    result = quiet_train("sklearn.ensemble.RandomForestRegressor", frame, "t", experiment=tracking)
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert {"rmse", "mae", "r2"} <= set(run.data.metrics) and run.data.params["n_estimators"] == "100"
    assert "plots/residuals.png" in artifact_paths(mlflow.MlflowClient(), result.run_id, "plots")
    X = frame.drop(columns="t")
    assert np.allclose(mlflow.pyfunc.load_model(result.model_uri).predict(X), result.model.predict(X))


def test_torch_module_trains_and_logs_its_loss(tracking):
    import mlflow
    import torch

    frame = regression_frame()
    module = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    result = quiet_train(module, frame, "t", epochs=2, batch_size=32, experiment=tracking)
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(result.run_id, "train_loss")
    assert [m.step for m in losses] == [0, 1] and len(result.history["train_loss"]) == 2
    assert {"rmse", "mae", "r2"} <= set(client.get_run(result.run_id).data.metrics)
    assert client.get_run(result.run_id).data.params["himalia.epochs"] == "2"
    X = frame.drop(columns="t")
    loaded = mlflow.pyfunc.load_model(result.model_uri).predict(X.to_numpy(dtype=np.float32))
    assert np.allclose(np.ravel(loaded), result.model.predict(X), atol=1e-5)
    assert result.model.module is not module


def test_fit_function_model_is_logged_as_pyfunc(tracking):
    import mlflow

    seen = {}

    def fit(train_df, test_df):
        from sklearn.linear_model import Ridge

        seen["columns"] = list(train_df.columns)
        seen["rows"] = len(train_df), len(test_df)
        return Ridge().fit(train_df.drop(columns="t"), train_df["t"])

    frame = regression_frame()
    result = quiet_train(fit, frame, "t", experiment=tracking)
    assert seen == {"columns": ["a", "b", "t"], "rows": (225, 75)}
    X = frame.drop(columns="t")
    assert np.allclose(mlflow.pyfunc.load_model(result.model_uri).predict(X), result.model.predict(X))


def test_failed_fit_ends_the_run_failed(tracking):
    import mlflow

    def fit(train_df, test_df):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        quiet_train(fit, regression_frame(), "t", experiment=tracking, run_name="doomed")
    runs = mlflow.search_runs(experiment_names=[tracking], filter_string="attributes.run_name = 'doomed'")
    assert list(runs["status"]) == ["FAILED"]
    assert mlflow.active_run() is None
