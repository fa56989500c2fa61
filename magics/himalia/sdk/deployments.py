"""Model deployments from Python: serve an MLflow model as a versioned service, follow it,
call it, and read what it predicted.

The platform API (``/api/v1/deployments``) manages deployments; the models themselves answer
through the hub's proxy at ``<hub>/models/<name>/``. :func:`batch_predict` scores a DataFrame or
a Parquet file in chunks, either with a deployment or with an MLflow model loaded locally;
:func:`batch_job` does the same as a platform job, now or on a schedule.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import httpx

from .client import Client, HimaliaError, json_or_raise
from .jobs import Jobs, current_run
from .lineage import notebook_path, sha256

#: States after which a version no longer changes by itself.
SETTLED = ("serving", "failed", "retired")
#: The request bodies MLflow's scoring protocol accepts.
SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_MODEL_URI = re.compile(r"^(runs:/|models:/)|://")


class DeploymentFailed(HimaliaError):
    """A version that failed to build or start; ``version`` is its JSON, with its ``reason``."""

    def __init__(self, message: str, version: dict):
        super().__init__(message)
        self.version = version


def models_base_url(api_url: str, env: Mapping[str, str] | None = None) -> str:
    """Where the hub serves models: ``HIMALIA_MODELS_URL``, else the platform API's URL with its
    ``services/<api>/`` replaced by ``models/`` (both sit behind the same proxy)."""
    env = os.environ if env is None else env
    if env.get("HIMALIA_MODELS_URL"):
        return env["HIMALIA_MODELS_URL"].rstrip("/") + "/"
    base, found = re.subn(r"services/[^/]+/?$", "models/", api_url)
    if not found:
        raise HimaliaError(f"Cannot tell where models are served from {api_url}: set HIMALIA_MODELS_URL.")
    return base


def deploy_lineage(cell_source: str = "", env: Mapping[str, str] | None = None) -> dict:
    """Where a deployment came from: this kernel's notebook, the deploying cell's SHA-256 and the
    job run, as far as they are known."""
    env = os.environ if env is None else env
    found: dict[str, Any] = {"notebook": notebook_path(env),
                             "cell_hash": sha256(cell_source) if cell_source else "",
                             "job_run_id": current_run(env)}
    return {k: v for k, v in found.items() if v not in ("", None)}


def is_model_uri(ref: str) -> bool:
    """Whether ``ref`` names an MLflow model (``runs:/``, ``models:/``, ``scheme://``) rather than
    a deployment."""
    return bool(_MODEL_URI.search(str(ref)))


def scoring_body(data) -> dict:
    """``data`` as MLflow scoring JSON: a DataFrame as ``dataframe_split`` (without its index);
    a dict already in that format as it is."""
    if isinstance(data, Mapping):
        if not set(SCORING_KEYS) & set(data):
            raise TypeError(f"predict takes a DataFrame or a dict with one of {', '.join(SCORING_KEYS)}")
        return dict(data)
    if hasattr(data, "to_json"):
        # Full precision: pandas rounds floats to 10 digits by default.
        return {"dataframe_split": json.loads(data.to_json(orient="split", index=False,
                                                           date_format="iso", double_precision=15))}
    raise TypeError(f"predict takes a pandas DataFrame or a scoring dict, not {type(data).__name__}")


class Deployments:
    """``/api/v1/deployments`` through a :class:`Client`, and the models at ``models_url``."""

    def __init__(self, client: Client | None = None, models_url: str | None = None,
                 predict_timeout: float = 60.0):
        self.client = client or Client.from_env()
        self.models_url = models_url or models_base_url(self.client.api_url)
        self.predict_timeout = predict_timeout

    # -- deployments -------------------------------------------------------------------------
    def deploy(self, name: str, model_uri: str, *, canary_percent: int = 0, replicas: int = 1,
               service_code: str | None = None, lineage: dict | None = None,
               shared_with: list[str] | None = None, features: list[str] | None = None,
               allow_skew: bool = False) -> dict:
        """Deploy ``model_uri`` as a new version of ``name`` (created if new). ``canary_percent``
        0 swaps all traffic once the version is healthy; 1..99 sends it that share. With
        ``features`` (refs ``view:feature``, the same the model's training run read, unless
        ``allow_skew``) callers send entity keys and the platform adds those features' online
        values to each row. Returns ``{"deployment", "version"}`` at once: follow the version
        with :meth:`wait`."""
        body = {"name": name, "model_uri": model_uri, "canary_percent": canary_percent,
                "replicas": replicas, "service_code": service_code, "lineage": lineage,
                "shared_with": shared_with, "features": list(features) if features else None,
                "allow_skew": allow_skew or None}
        return self.client.request("POST", "deployments",
                                   json={k: v for k, v in body.items() if v is not None})

    def list(self, offset: int = 0, limit: int = 100) -> list[dict]:
        """Your deployments, those shared with you (an admin: everyone's)."""
        return self.client.request("GET", "deployments",
                                   params={"offset": offset, "limit": limit})["deployments"]

    def get(self, name: str) -> dict:
        return self.client.request("GET", f"deployments/{name}")

    def share(self, name: str, users: list[str]) -> dict:
        """Let exactly ``users`` call and read the deployment (besides you and admins)."""
        return self.client.request("PATCH", f"deployments/{name}", json={"shared_with": list(users)})

    def promote(self, name: str) -> dict:
        """Give the canary all traffic and retire the version it replaces."""
        return self.client.request("POST", f"deployments/{name}/promote")

    def rollback(self, name: str) -> dict:
        """Retire the canary, or bring the previous version back."""
        return self.client.request("POST", f"deployments/{name}/rollback")

    def delete(self, name: str) -> None:
        self.client.request("DELETE", f"deployments/{name}")

    def wait(self, name: str, version: int, timeout: float = 300, poll: float = 1.0,
             on_progress: Callable[[dict], None] | None = None) -> dict:
        """Poll until ``version`` is serving or retired and return it; ``on_progress(version)``
        after each poll. A failed version raises :class:`DeploymentFailed` with its reason."""
        deadline = time.monotonic() + timeout
        while True:
            found = [v for v in self.get(name)["versions"] if v["version"] == version]
            if not found:
                raise HimaliaError(f"{name} has no version {version}")
            info = found[0]
            if on_progress is not None:
                on_progress(info)
            if info["state"] == "failed":
                reason = info.get("reason") or "no reason given"
                raise DeploymentFailed(f"{name} version {version} failed: {reason}", info)
            if info["state"] in SETTLED:
                return info
            if time.monotonic() > deadline:
                raise HimaliaError(f"{name} version {version} is still {info['state']} after {timeout:.0f}s")
            time.sleep(poll)

    # -- API keys ----------------------------------------------------------------------------
    def create_key(self, name: str, label: str) -> dict:
        """A new API key for callers without a hub account; ``"key"`` is shown only this once."""
        return self.client.request("POST", f"deployments/{name}/keys", json={"label": label})

    def keys(self, name: str) -> list[dict]:
        return self.client.request("GET", f"deployments/{name}/keys")["keys"]

    def revoke_key(self, name: str, key_id: int) -> None:
        self.client.request("DELETE", f"deployments/{name}/keys/{key_id}")

    # -- what it did -------------------------------------------------------------------------
    def _prediction_params(self, version, since, limit) -> dict:
        if isinstance(since, datetime):
            since = since.isoformat()
        params = {"version": version, "since": since, "limit": limit}
        return {k: v for k, v in params.items() if v is not None}

    def predictions(self, name: str, version: int | None = None, since: datetime | str | None = None,
                    limit: int = 100) -> list[dict]:
        """Logged calls, newest first: ``at``, ``version``, ``latency_ms``, ``status``, ``inputs``,
        ``outputs``, ``caller``."""
        return self.client.request("GET", f"deployments/{name}/predictions",
                                   params=self._prediction_params(version, since, limit))["predictions"]

    def predictions_frame(self, name: str, version: int | None = None,
                          since: datetime | str | None = None, limit: int = 100):
        """:meth:`predictions` as a pandas DataFrame (inputs and outputs as JSON text)."""
        import pandas as pd

        params = {**self._prediction_params(version, since, limit), "format": "parquet"}
        response = self.client.raw("GET", f"deployments/{name}/predictions", params=params)
        return pd.read_parquet(io.BytesIO(response.content))

    def metrics(self, name: str, minutes: int = 60) -> dict:
        """Per-minute ``buckets`` and per-version ``totals`` of calls, errors and latency."""
        return self.client.request("GET", f"deployments/{name}/metrics", params={"minutes": minutes})

    def logs(self, name: str, version: int | None = None, lines: int = 200) -> str:
        """The build log, then the serving log, of ``version`` (default: the newest)."""
        params = {"lines": lines, **({"version": version} if version is not None else {})}
        return self.client.raw("GET", f"deployments/{name}/logs", params=params).text

    # -- calling the model -------------------------------------------------------------------
    def url(self, name: str) -> str:
        """Where the deployment answers predictions."""
        return f"{self.models_url}{name}/predict"

    def predict(self, name: str, data, *, key: str | None = None) -> list:
        """The model's predictions for ``data``: a DataFrame, or a dict in MLflow scoring format.
        Authenticates with your hub token, or with the API key ``key``."""
        # The hub token the client holds; an API key replaces it.
        headers = {"Authorization": f"Bearer {key}"} if key else self.client.headers
        try:
            response = httpx.post(self.url(name), json=scoring_body(data), headers=headers,
                                  timeout=self.predict_timeout)
        except httpx.HTTPError as e:
            raise HimaliaError(f"Cannot reach the model at {self.url(name)}: {e}") from e
        return json_or_raise(response)["predictions"]


# -- batch scoring -------------------------------------------------------------------------------

def _chunks(data, chunk_size: int) -> tuple[int, Iterator]:
    """The number of rows and an iterator of DataFrames of at most ``chunk_size`` rows."""
    if hasattr(data, "iloc"):
        return len(data), (data.iloc[i:i + chunk_size] for i in range(0, len(data), chunk_size))
    import pyarrow.parquet as pq

    source = pq.ParquetFile(data)
    batches = source.iter_batches(batch_size=chunk_size)
    return source.metadata.num_rows, (batch.to_pandas() for batch in batches)


def _column(predictions, rows: int) -> list | Any:
    """Predictions as the values of one column of ``rows`` rows."""
    if hasattr(predictions, "columns"):  # a DataFrame: its only column, else one dict per row
        predictions = (predictions.iloc[:, 0] if predictions.shape[1] == 1
                       else predictions.to_dict(orient="records"))
    if hasattr(predictions, "to_numpy"):
        predictions = predictions.to_numpy()
    if getattr(predictions, "ndim", 1) > 1:
        predictions = list(predictions)
    if len(predictions) != rows:
        raise HimaliaError(f"the model returned {len(predictions)} predictions for {rows} rows")
    return predictions


def batch_predict(name_or_model_uri: str, data, output: str | os.PathLike | None = None, *,
                  chunk_size: int = 10_000, client: Client | None = None, progress: bool = True):
    """Score ``data`` (a DataFrame, or the path of a Parquet file read in batches) ``chunk_size``
    rows at a time, with a model URI loaded here (``runs:/...``, ``models:/...``) or with the
    deployment of that name.

    Returns the input columns plus ``prediction`` as one DataFrame, or, when ``output`` (a path)
    is given, writes them to that Parquet file chunk by chunk and returns its :class:`Path`, so
    inputs larger than memory can be scored.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of rows, not {chunk_size!r}")
    if is_model_uri(name_or_model_uri):
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(name_or_model_uri)
        score = model.predict
    else:
        deployments = Deployments(client)
        score = lambda chunk: deployments.predict(name_or_model_uri, chunk)  # noqa: E731
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    total, chunks = _chunks(data, chunk_size)
    writer = None
    done = []
    with tqdm(total=total, unit="row", desc=str(name_or_model_uri), disable=not progress) as bar:
        try:
            for chunk in chunks:
                scored = chunk.assign(prediction=_column(score(chunk), len(chunk)))
                if output is None:
                    done.append(scored)
                else:
                    if writer is None:
                        table = pa.Table.from_pandas(scored, preserve_index=False)
                        writer = pq.ParquetWriter(output, table.schema)
                    else:
                        # Later chunks take the first one's types (an all-missing chunk has none).
                        table = pa.Table.from_pandas(scored, schema=writer.schema, preserve_index=False)
                    writer.write_table(table)
                bar.update(len(chunk))
        finally:
            if writer is not None:
                writer.close()
    if output is None:
        return pd.concat(done) if done else _empty(data)
    if writer is None:
        _empty(data).to_parquet(output, index=False)
    return Path(output)


def _empty(data):
    """No rows scored: the input's columns and an empty ``prediction``."""
    if not hasattr(data, "iloc"):
        import pyarrow.parquet as pq

        data = pq.read_schema(data).empty_table().to_pandas()
    return data.assign(prediction=[None] * len(data)).astype({"prediction": object})


# -- batch scoring as a job ----------------------------------------------------------------------

#: The job name rule of the platform (``himalia.hub.jobs.service.NAME``) and of recorded values.
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VALUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_SCORING_CODE = '''\
import pandas
from himalia.sdk import batch_predict, record

batch_predict(model, input_path, output="predictions.parquet", chunk_size=chunk_size)
scored = pandas.read_parquet("predictions.parquet")
record(record_as, scored)
record("rows", len(scored))
scored.head()'''


def batch_job_name(name_or_model_uri: str) -> str:
    """The default job name of :func:`batch_job`: ``score-<deployment>``, or for a model URI a
    name made of its path (``models:/churn/3`` -> ``score-churn-3``) that the platform accepts."""
    ref = str(name_or_model_uri)
    if is_model_uri(ref):
        ref = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:/*", "", ref)
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", ref).strip("-_.")
    name = f"score-{slug}".rstrip("-")
    if len(name) > 100:
        # Two long URIs sharing their first characters still get two jobs.
        digest = sha256(str(name_or_model_uri))[:8]
        name = f"{name[:91].rstrip('-_.')}-{digest}"
    return name


def batch_notebook(model: str, input_path: str, chunk_size: int = 10_000,
                   record_as: str = "predictions") -> dict:
    """The notebook a :func:`batch_job` runs, as JSON (the same for the same arguments): a cell
    tagged ``parameters`` (``model``, ``input_path``, ``chunk_size``, ``record_as``) and a cell
    that scores ``input_path`` with :func:`batch_predict` and records the scored table as
    ``record_as`` and its row count as ``rows``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(
        f"model = {str(model)!r}\ninput_path = {str(input_path)!r}\n"
        f"chunk_size = {int(chunk_size)!r}\nrecord_as = {str(record_as)!r}", id="parameters")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Batch scoring\n\nScores the Parquet file `input_path` (a copy of it is in the run's "
            "folder) with `model`, a deployment or an MLflow model URI, `chunk_size` rows at a "
            "time; records the scored rows as `record_as` and their number as `rows`. Made by "
            "`himalia.sdk.batch_job`.", id="about"),
        parameters,
        nbformat.v4.new_code_cell(_SCORING_CODE, id="score"),
    ]
    nb.metadata["kernelspec"] = {"name": "himalia", "display_name": "Python 3 (himalia)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return json.loads(nbformat.writes(nb))


def batch_job(name_or_model_uri: str, input_path: str, *, job: str | None = None,
              chunk_size: int = 10_000, schedule: str | None = None, timezone: str = "UTC",
              record_as: str = "predictions", client: Client | None = None) -> dict:
    """Batch scoring as a platform job: score the Parquet file ``input_path`` (relative to your
    home folder) with the deployment or model URI ``name_or_model_uri``, as you, whether or not
    your server runs.

    The job (``job``, default :func:`batch_job_name`) snapshots the file and runs a notebook
    (:func:`batch_notebook`) that records the scored rows as ``record_as`` (a DataFrame:
    read it with :func:`himalia.sdk.latest`) and their number as ``rows``. A job of that name is
    updated to this model and file (a new version; its schedule is kept unless ``schedule`` is
    given). With a cron ``schedule`` (in ``timezone``) returns ``{"job": job}``; without one it
    also starts a run now and returns ``{"job": job, "run": run}``: follow it with
    :meth:`Jobs.wait <himalia.sdk.Jobs.wait>`.
    """
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of rows, not {chunk_size!r}")
    if not _VALUE_NAME.match(str(record_as)) or record_as == "rows":
        raise ValueError(f"record_as must be a value name (a letter or _, then letters, digits, "
                         f"'_', '.', '-'), other than 'rows', not {record_as!r}")
    name = job or batch_job_name(name_or_model_uri)
    if not _JOB_NAME.match(name) or name.isdigit():
        raise ValueError(f"job must be 1-100 letters, digits, '_', '.', '-', starting with a "
                         f"letter or digit, not only digits, not {name!r}")
    jobs = Jobs(client)
    notebook = batch_notebook(name_or_model_uri, input_path, chunk_size, record_as)
    fields: dict[str, Any] = {"inputs": [str(input_path)]}
    if schedule is not None:
        fields.update(schedule=schedule, timezone=timezone)
    try:
        made = jobs.create(name, notebook=notebook, **fields)
    except HimaliaError as e:
        if e.status != 409:  # 409: you already have a job of that name
            raise
        made = jobs.update(name, notebook=notebook, **fields)
    if schedule is not None:
        return {"job": made}
    return {"job": made, "run": jobs.run(made["id"])}
