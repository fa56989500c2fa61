"""Scheduled notebook jobs from Python: define, run, follow, read outputs and values.

``record(name, value)`` inside a job run stores a value with the run (JSON, or a DataFrame as
Parquet); ``latest(job, name)`` reads the newest successful run's value, e.g. in a dashboard.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .client import Client, HimaliaError

PARQUET = "application/vnd.apache.parquet"
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


class Jobs:
    """``/api/v1/jobs`` and ``/api/v1/runs`` through a :class:`Client`."""

    def __init__(self, client: Client | None = None):
        self.client = client or Client.from_env()

    # -- definitions -------------------------------------------------------------------------
    def create(self, name: str, *, notebook: dict | str | Path | None = None,
               path: str | None = None, **fields: Any) -> dict:
        """Make a job from a notebook (its JSON, a local file to upload, or ``path`` in your
        home folder, read by the platform). ``fields``: parameters, schedule, timezone, profile,
        timeout_seconds, max_retries, retry_backoff_seconds, concurrency, notify, keep_runs,
        inputs, paused, published."""
        body = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
        if notebook is not None:
            body["notebook"] = _notebook_json(notebook)
        if path is not None:
            body["path"] = path
        return self.client.request("POST", "jobs", json=body)

    def list(self, offset: int = 0, limit: int = 100) -> list[dict]:
        return self.client.request("GET", "jobs", params={"offset": offset, "limit": limit})["jobs"]

    def get(self, job: str | int, owner: str | None = None) -> dict:
        return self.client.request("GET", f"jobs/{job}", params={"owner": owner} if owner else None)

    def update(self, job: str | int, **fields: Any) -> dict:
        if "notebook" in fields and fields["notebook"] is not None:
            fields["notebook"] = _notebook_json(fields["notebook"])
        return self.client.request("PATCH", f"jobs/{job}", json=fields)

    def pause(self, job: str | int) -> dict:
        return self.update(job, paused=True)

    def resume(self, job: str | int) -> dict:
        return self.update(job, paused=False)

    def delete(self, job: str | int) -> None:
        self.client.request("DELETE", f"jobs/{job}")

    def inspect(self, *, notebook: dict | str | Path | None = None, path: str | None = None) -> dict:
        """``{name: {"type", "default", "help"}}``: the parameters a job of this notebook takes."""
        body = {"notebook": _notebook_json(notebook)} if notebook is not None else {"path": path}
        return self.client.request("POST", "jobs/inspect", json=body)["parameters"]

    def schedule_preview(self, cron: str, timezone: str = "UTC", count: int = 5) -> list[str]:
        return self.client.request("GET", "jobs/schedule-preview",
                                   params={"cron": cron, "timezone": timezone, "count": count})["next"]

    # -- runs --------------------------------------------------------------------------------
    def run(self, job: str | int, parameters: Mapping[str, Any] | None = None) -> dict:
        """Queue a run now; returns it (``"id"``, ``"state"``)."""
        return self.client.request("POST", f"jobs/{job}/runs", json={"parameters": dict(parameters or {})})

    def runs(self, job: str | int, offset: int = 0, limit: int = 50) -> list[dict]:
        return self.client.request("GET", f"jobs/{job}/runs", params={"offset": offset, "limit": limit})["runs"]

    def run_info(self, run: int) -> dict:
        return self.client.request("GET", f"runs/{run}")

    def cancel(self, run: int) -> dict:
        return self.client.request("POST", f"runs/{run}/cancel")

    def rerun(self, run: int) -> dict:
        return self.client.request("POST", f"runs/{run}/rerun")

    def delete_run(self, run: int) -> None:
        self.client.request("DELETE", f"runs/{run}")

    def logs(self, run: int) -> str:
        return self.client.raw("GET", f"runs/{run}/logs").text

    def output(self, run: int, format: str = "ipynb") -> bytes:
        return self.client.raw("GET", f"runs/{run}/output", params={"format": format}).content

    def values(self, run: int) -> dict:
        return self.client.request("GET", f"runs/{run}/values")["values"]

    def wait(self, run: int, timeout: float = 3600, interval: float = 0.5,
             on_progress: Callable[[dict], None] | None = None) -> dict:
        """Poll until the run ends; ``on_progress(run)`` after each poll. Returns the run."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.run_info(run)
            if on_progress is not None:
                on_progress(info)
            if info["state"] in TERMINAL:
                return info
            if time.monotonic() > deadline:
                raise HimaliaError(f"run {run} is still {info['state']} after {timeout:.0f}s")
            time.sleep(interval)

    # -- values ------------------------------------------------------------------------------
    def latest(self, job: str | int, name: str, owner: str | None = None) -> Any:
        response = self.client.raw("GET", f"jobs/{job}/values/{name}",
                                   params={"owner": owner} if owner else None)
        return _decode(response)


def _notebook_json(notebook: dict | str | Path) -> dict:
    if isinstance(notebook, dict):
        return notebook
    try:
        text = Path(notebook).read_text() if not str(notebook).lstrip().startswith("{") else str(notebook)
    except OSError as e:
        raise HimaliaError(f"{notebook}: cannot read it ({e.strerror})") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise HimaliaError(f"{notebook}: not a notebook's JSON ({e})") from None


def _decode(response) -> Any:
    if response.headers.get("content-type", "").startswith(PARQUET):
        import pandas as pd

        return pd.read_parquet(io.BytesIO(response.content))
    return response.json()["value"]


def current_run(env: Mapping[str, str] | None = None) -> int | None:
    """The job run this kernel executes, or None outside a job."""
    env = os.environ if env is None else env
    value = env.get("HIMALIA_JOB_RUN_ID", "")
    return int(value) if value.isdigit() else None


def record(name: str, value: Any, client: Client | None = None) -> bool:
    """Store ``value`` (JSON-serialisable, or a pandas DataFrame) with the current job run.

    Outside a job run it stores nothing and returns False, so a notebook runs the same
    interactively.
    """
    run = current_run()
    if run is None:
        return False
    client = client or Client.from_env()
    if type(value).__name__ == "DataFrame" and hasattr(value, "to_parquet"):
        buffer = io.BytesIO()
        value.to_parquet(buffer)
        client.raw("PUT", f"runs/{run}/values/{name}", content=buffer.getvalue(),
                   headers={"Content-Type": PARQUET})
    else:
        try:
            body = json.dumps({"value": value}, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise HimaliaError(f"record({name!r}): the value must be JSON or a DataFrame ({e})") from None
        client.raw("PUT", f"runs/{run}/values/{name}", content=body,
                   headers={"Content-Type": "application/json"})
    return True


def latest(job: str | int, name: str, owner: str | None = None, client: Client | None = None) -> Any:
    """The value ``name`` of the newest succeeded run of ``job`` (a DataFrame for tables)."""
    return Jobs(client).latest(job, name, owner)
