"""``%train --on dask``: argument handling and the choice of cluster, in a real IPython shell.
A fit on a real gateway cluster, logged to MLflow, is in tests/integration/test_clusters.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from himalia.magics.clusters import ClusterMagics
from himalia.magics.tracking import TrackingMagics
from himalia.sdk import HimaliaError
from himalia.sdk.clusters import kernel_client, training_client


@pytest.fixture
def shell(monkeypatch):
    monkeypatch.delenv("HIMALIA_API_URL", raising=False)
    monkeypatch.delenv("HIMALIA_GATEWAY_URL", raising=False)
    ip = InteractiveShell.instance()
    ip.register_magics(TrackingMagics)
    ip.register_magics(ClusterMagics)
    rng = np.random.default_rng(0)
    ip.user_ns["df"] = pd.DataFrame({"x": rng.normal(size=80), "y": rng.integers(0, 2, 80)})
    return ip


@pytest.mark.parametrize("line, message", [
    ("--workers 2", "--workers is for --on dask"),
    ("--on local --workers 2", "--workers is for --on dask"),
    ("--on spark", "invalid choice: 'spark'"),
    ("--on dask --workers 0", "--workers must be 1 or more, got 0"),
    ("--on dask --workers two", "invalid int value: 'two'"),
])
def test_argument_mistakes_are_usage_errors(shell, line, message):
    with pytest.raises(UsageError, match=message):
        shell.run_line_magic("train", f"sklearn.linear_model.LogisticRegression df --target y {line}")


def test_an_unknown_estimator_is_refused_before_any_cluster_starts(shell):
    with pytest.raises(UsageError, match="%train: .*no_such"):
        shell.run_line_magic("train", "sklearn.linear_model.no_such df --target y --on dask")


def test_a_torch_module_is_refused_on_dask(shell):
    torch = pytest.importorskip("torch")
    shell.user_ns["net"] = torch.nn.Linear(1, 2)
    with pytest.raises(UsageError, match="a torch module trains in this kernel: drop --on dask"):
        shell.run_line_magic("train", "net df --target y --on dask")


def test_without_a_platform_on_dask_says_what_to_set(shell):
    with pytest.raises(UsageError, match=r"%train --on dask: No platform URL: set HIMALIA_API_URL"):
        shell.run_line_magic("train", "sklearn.linear_model.LogisticRegression df --target y --on dask")


def test_help_shows_the_dask_options(shell, capsys):
    shell.run_line_magic("train", "--help")
    out = capsys.readouterr().out
    assert "--on {local,dask}" in out and "--workers" in out


def test_only_a_gateway_clusters_client_is_taken_as_the_kernels(monkeypatch):
    from distributed import Client

    assert kernel_client(None) is None
    # A plain in-process client is not a platform cluster: %train --on dask starts its own.
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as local:
        assert kernel_client(local) is None
        assert kernel_client(None) is None


def test_a_training_cluster_needs_at_least_one_worker():
    with pytest.raises(HimaliaError, match="workers must be 1 or more, got 0"):
        training_client(None, 0)
