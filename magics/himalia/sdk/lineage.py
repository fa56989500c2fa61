"""Where a run came from: the tags every run himalia starts carries.

* ``himalia.user``: the hub user (``JUPYTERHUB_USER``);
* ``himalia.notebook``: the notebook's path in the server (relative to what it serves,
  ``HIMALIA_SERVER_ROOT`` or the home folder), when the kernel knows it (Jupyter Server gives
  kernels ``JPY_SESSION_NAME``);
* ``himalia.cell_sha256``: SHA-256 of the source of the cell that started the run;
* ``himalia.env_sha256``: SHA-256 of the kernel's package lock (``name==version`` of every
  installed distribution, sorted), logged as the artifact ``environment/requirements.txt``;
* ``himalia.job_run``: the job run id when ``HIMALIA_JOB_RUN_ID`` is set (jobs set it).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata

LOCK_ARTIFACT = "environment/requirements.txt"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def package_lock() -> str:
    """``name==version`` of every distribution this interpreter sees (the user's own packages
    included), one per line, sorted by name: what the kernel ran with."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            # The first one found wins, as at import: the user's own layer comes first on the path.
            pins.setdefault(name.lower().replace("_", "-"), f"{name}=={dist.version}")
    return "\n".join(pins[key] for key in sorted(pins)) + "\n"


def notebook_path(env: Mapping[str, str]) -> str:
    """The kernel's notebook as the server names it (relative to its root), or ''."""
    path = env.get("JPY_SESSION_NAME", "")
    root = env.get("HIMALIA_SERVER_ROOT") or env.get("HOME") or ""
    if path.startswith("/") and root:
        relative = posixpath.relpath(path, root)
        if not relative.startswith(".."):
            return relative
    return path


def lineage_tags(cell_source: str = "", env: Mapping[str, str] | None = None,
                 lock: str | None = None) -> dict[str, str]:
    """The lineage tags of a run started from ``cell_source`` in this kernel."""
    env = os.environ if env is None else env
    tags = {"himalia.env_sha256": sha256(package_lock() if lock is None else lock)}
    if env.get("JUPYTERHUB_USER"):
        tags["himalia.user"] = env["JUPYTERHUB_USER"]
    if notebook_path(env):
        tags["himalia.notebook"] = notebook_path(env)
    if cell_source:
        tags["himalia.cell_sha256"] = sha256(cell_source)
    if env.get("HIMALIA_JOB_RUN_ID"):
        tags["himalia.job_run"] = env["HIMALIA_JOB_RUN_ID"]
    return tags


def start_run(run_name: str | None = None, experiment: str | None = None, cell_source: str = ""):
    """``mlflow.start_run`` with the lineage tags, the package lock logged beside them, and the
    run recorded as :func:`himalia.sdk.tracking.last_run_id`. Nested in an active run."""
    import mlflow

    from . import tracking

    experiment_id = None
    if experiment:
        found = mlflow.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    run = mlflow.start_run(run_name=run_name, experiment_id=experiment_id,
                           tags=lineage_tags(cell_source), nested=mlflow.active_run() is not None)
    mlflow.log_text(package_lock(), LOCK_ARTIFACT)
    tracking.set_last_run_id(run.info.run_id)
    return run


def log_lineage(run_id: str, cell_source: str = "") -> None:
    """Add the lineage tags and the package lock to a run someone else started."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for key, value in lineage_tags(cell_source).items():
        client.set_tag(run_id, key, value)
    client.log_text(run_id, package_lock(), LOCK_ARTIFACT)
