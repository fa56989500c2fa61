"""``%track`` / ``%%track`` (runs with lineage) and ``%train`` (fit, check, log in one line).

MLflow is imported on first use, not when the kernel starts. Tracking never breaks the user's
cell: when MLflow cannot be reached, ``%%track`` runs the cell untracked and ``%train`` trains
without logging, each saying so once.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from html import escape
from urllib.parse import urlparse

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Float

from .base import HimaliaMagics


def ui_base(tracking_uri: str) -> str:
    """The MLflow UI as the browser reaches it: the path of the tracking URI on the hub's origin
    (kernels may reach the hub at an address the browser cannot)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https"):
        return ""
    return parsed.path.rstrip("/") + "/"


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    base = ui_base(tracking_uri)
    return f"{base}#/experiments/{experiment_id}/runs/{run_id}" if base else ""


def unreachable(tracking_uri: str, timeout: float) -> str | None:
    """Why the tracking server cannot be used right now; None when it answers."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https"):
        return None
    import httpx

    try:
        r = httpx.get(tracking_uri.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as e:
        return f"MLflow at {tracking_uri} is unreachable ({type(e).__name__})"
    if r.status_code >= 500:
        return f"MLflow at {tracking_uri} answered {r.status_code}"
    return None


def _variables(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    bad = [n for n in names if not n.isidentifier()]
    if bad:
        raise UsageError(f"%%track --log takes variable names separated by commas, not {', '.join(bad)}")
    return names


@magics_class
class TrackingMagics(HimaliaMagics):
    """Experiment tracking magics; configurable as ``c.TrackingMagics``."""

    reach_timeout = Float(
        3.0, help="Seconds to wait for MLflow's health check before tracking without it."
    ).tag(config=True)

    # -- helpers ---------------------------------------------------------------------------
    def _cell_source(self) -> str:
        return self._cell

    def _tracking_uri(self) -> str:
        import mlflow

        return mlflow.get_tracking_uri()

    def _show_run(self, run, verb: str) -> None:
        link = run_link(self._tracking_uri(), run.info.experiment_id, run.info.run_id)
        text = f"{verb} run {run.info.run_name} ({run.info.run_id})" + (f": {link}" if link else "")
        html = (f"{escape(verb)} run <b>{escape(run.info.run_name or '')}</b> "
                f"<code>{escape(run.info.run_id)}</code>"
                + (f" · <a href='{escape(link)}' target='_blank'>open in MLflow</a>" if link else ""))
        display({"text/plain": text, "text/html": html}, raw=True)

    def _start(self, name: str | None, experiment: str | None):
        from mlflow.exceptions import MlflowException

        from himalia.sdk import lineage

        why = unreachable(self._tracking_uri(), self.reach_timeout)
        if why:
            raise UsageError(f"%track: {why}; start the run again when it is back.")
        try:
            return lineage.start_run(name, experiment, cell_source=self._cell_source())
        except MlflowException as e:
            raise UsageError(f"%track: MLflow refused the run: {e.message}") from None

    # -- %track / %%track ------------------------------------------------------------------
    @magic_arguments()
    @argument("action", nargs="?", choices=["start", "stop", "status"],
              help="line magic: start a run, stop the active one, or show the state")
    @argument("--name", help="the run's name")
    @argument("--experiment", help="experiment name (default: your own, users/<you>)")
    @argument("--log", default="", help="cell magic: variables to log as params, e.g. --log lr,epochs")
    @line_cell_magic
    def track(self, line: str = "", cell: str | None = None):
        """Track runs in MLflow with lineage: %track start|stop|status, or %%track around a cell."""
        args = self.parse(self.track, line)
        if args is None:
            return None
        if cell is not None:
            if args.action:
                raise UsageError("%%track runs the cell in a run: give only --name, --experiment, --log")
            return self._track_cell(args, cell)
        if args.log:
            raise UsageError("--log is for the cell magic %%track (the variables of its cell)")
        if args.action in (None, "status"):
            return self._status()
        if args.action == "start":
            run = self._start(args.name, args.experiment)
            self._show_run(run, "Started")
            return None
        return self._stop()

    def _stop(self, status: str = "FINISHED"):
        import mlflow

        from himalia.sdk import tracking

        active = mlflow.active_run()
        if active is None:
            raise UsageError("%track stop: no active run (start one with %track start)")
        waiting = tracking.end_run(status)
        tracking.set_last_run_id(active.info.run_id)
        self._show_run(active, "Ended")
        if waiting:
            print(f"{waiting} metric points are still waiting for MLflow; they are kept and sent "
                  "when it answers.", file=sys.stderr)
        return None

    def _status(self):
        import mlflow

        from himalia.sdk import tracking

        active = mlflow.active_run()
        lines = [f"tracking URI: {self._tracking_uri()}",
                 f"active run: {active.info.run_id if active else 'none'}",
                 f"last run: {tracking.last_run_id() or 'none'}",
                 f"metric points waiting: {tracking.pending()}",
                 f"metric points refused: {len(tracking.failed())}"]
        print("\n".join(lines))

    def _track_cell(self, args, cell: str):
        import mlflow

        from himalia.sdk import tracking

        names = _variables(args.log)
        try:
            run = self._start(args.name, args.experiment)
        except UsageError as e:
            print(f"{e} Running the cell untracked.", file=sys.stderr)
            return self.shell.run_cell(cell)
        self._show_run(run, "Started")
        result = self.shell.run_cell(cell)
        missing = [n for n in names if n not in self.shell.user_ns]
        if missing:
            print(f"%%track --log: no variable {', '.join(missing)} after the cell; not logged",
                  file=sys.stderr)
        params = {n: repr(self.shell.user_ns[n])[:6000] for n in names if n not in missing}
        try:
            if params:
                mlflow.log_params(params)
        finally:
            waiting = tracking.end_run("FINISHED" if result.success else "FAILED")
            tracking.set_last_run_id(run.info.run_id)
        if waiting:
            print(f"{waiting} metric points are still waiting for MLflow; they are kept and sent "
                  "when it answers.", file=sys.stderr)
        return None

    # -- %train ----------------------------------------------------------------------------
    def _parallel(self, args):
        """The joblib backend of the fit and the run's extra tags: Dask's on ``--on dask``."""
        if args.on != "dask":
            if args.workers is not None:
                raise UsageError("%train: --workers is for --on dask")
            return contextlib.nullcontext(), {}
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"%train: --workers must be 1 or more, got {args.workers}")
        from himalia.sdk.train import TrainError, resolve_estimator

        try:
            kind, _ = resolve_estimator(args.estimator, self.shell.user_ns)
        except TrainError as e:
            raise UsageError(f"%train: {e}") from None
        if kind == "torch":
            raise UsageError("%train --on dask runs scikit-learn's parallel work (searches, "
                             "ensembles) on Dask; a torch module trains in this kernel: drop --on dask")
        import joblib

        from .clusters import dask_training

        client, tags = dask_training(self.shell, args.workers)
        return joblib.parallel_config(backend="dask", client=client), tags

    @magic_arguments()
    @argument("estimator", help="import path (sklearn.linear_model.LogisticRegression), an "
                                "estimator or torch nn.Module variable, or a fit(train_df, test_df) function")
    @argument("data", help="a pandas DataFrame variable")
    @argument("--target", required=True, help="the column to predict")
    @argument("--task", default="auto", choices=["auto", "classification", "regression"])
    @argument("--test-size", type=float, default=0.25, help="held-out share (default 0.25)")
    @argument("--seed", type=int, default=0, help="seed of the split and the sample (default 0)")
    @argument("--sample", type=int, help="train on a reproducible sample of N rows")
    @argument("--encode", choices=["onehot", "ordinal"], help="encode non-numeric columns in a pipeline")
    @argument("--epochs", type=int, default=10, help="torch modules: epochs (default 10)")
    @argument("--lr", type=float, default=1e-3, help="torch modules: learning rate (default 0.001)")
    @argument("--batch-size", type=int, default=64, help="torch modules: batch size (default 64)")
    @argument("--name", help="the run's name")
    @argument("--experiment", help="experiment name (default: your own, users/<you>)")
    @argument("--on", choices=["local", "dask"], default="local",
              help="where scikit-learn's parallel work runs: this kernel (default) or your Dask "
                   "cluster (this kernel's, else a new one)")
    @argument("--workers", type=int, help="--on dask: workers of the cluster (default: as it is, "
                                          "or 2 for a new one)")
    @line_magic
    def train(self, line: str = ""):
        """Fit a model with checks and log everything to MLflow: model = %train EST df --target y."""
        args = self.parse(self.train, line)
        if args is None:
            return None
        import pandas as pd

        from himalia.sdk import lineage, tracking
        from himalia.sdk.train import TrainError, TrainWarning, run_url, train

        data = self.shell.user_ns.get(args.data)
        if not isinstance(data, pd.DataFrame):
            found = "no such variable" if args.data not in self.shell.user_ns else type(data).__name__
            raise UsageError(f"%train: DATA must be a pandas DataFrame variable; {args.data!r} is {found}")
        parallel, tags = self._parallel(args)
        why = unreachable(self._tracking_uri(), self.reach_timeout)
        if why:
            print(f"%train: {why}: training without logging (the model is returned, not logged).",
                  file=sys.stderr)
        cell = self._cell_source()
        with warnings.catch_warnings(record=True) as caught, parallel:
            warnings.simplefilter("always", TrainWarning)
            try:
                result = train(args.estimator, data, args.target, task=args.task,
                               test_size=args.test_size, seed=args.seed, sample=args.sample,
                               encode=args.encode, epochs=args.epochs, lr=args.lr,
                               batch_size=args.batch_size, run_name=args.name,
                               experiment=args.experiment, tags={**lineage.lineage_tags(cell), **tags},
                               user_ns=self.shell.user_ns, log=why is None)
            except TrainError as e:
                raise UsageError(f"%train: {e}") from None
        for warning in caught:
            if issubclass(warning.category, TrainWarning):
                print(f"warning: {warning.message}", file=sys.stderr)
        if result.run_id:
            from mlflow.tracking import MlflowClient

            MlflowClient().log_text(result.run_id, lineage.package_lock(), lineage.LOCK_ARTIFACT)
            tracking.set_last_run_id(result.run_id)
        display(result)
        if result.run_id:
            base = ui_base(self._tracking_uri())
            if base:
                link = run_url(base, result.experiment_id, result.run_id)
                display({"text/plain": f"MLflow run: {link}",
                         "text/html": f"<a href='{escape(link)}' target='_blank'>Open the run in MLflow</a>"},
                        raw=True)
        return result.model

