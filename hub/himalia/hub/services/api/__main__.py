"""Entry point the hub runs as the managed service ``himalia``.

The environment is read here, once: JupyterHub sets the ``JUPYTERHUB_*`` variables of a
managed service; ``himalia up`` adds the database URL, the local proxy URL, the platform's
public URL (``HIMALIA_PUBLIC_URL``) and the hex-encoded secret that signs browser cookies
(``HIMALIA_API_COOKIE_SECRET``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import uvicorn

from ...deployments.api import DeploymentsSettings
from ...features.repo import FeatureSettings
from ...labels.service import LabelSettings
from ...dashboards.service import DashboardSettings
from ...jobs.api import JobsSettings
from ...jobs.service import Limits
from .app import APISettings, create_app

log = logging.getLogger("himalia.api")


def cookie_secret(env: Mapping[str, str]) -> bytes:
    """The secret from ``HIMALIA_API_COOKIE_SECRET``; a random one (logins end with the
    process) when the hub does not pass it."""
    hex_secret = env.get("HIMALIA_API_COOKIE_SECRET", "").strip()
    if hex_secret:
        return bytes.fromhex(hex_secret)
    log.warning("HIMALIA_API_COOKIE_SECRET is not set: browsers must log in again after a restart.")
    return secrets.token_bytes(32)


def jobs_settings(env: Mapping[str, str]) -> JobsSettings | None:
    """Where jobs keep their files (``HIMALIA_JOBS_DIR``), the runner's socket and the limits
    (``HIMALIA_JOBS_LIMITS``, JSON of :class:`Limits`' fields)."""
    root = env.get("HIMALIA_JOBS_DIR", "")
    if not root:
        return None
    limits = json.loads(env.get("HIMALIA_JOBS_LIMITS") or "{}")
    limits["profiles"] = tuple(limits.get("profiles", ()))
    return JobsSettings(root=Path(root), runner_socket=Path(env["HIMALIA_JOBS_SOCKET"]),
                        limits=Limits(**limits))


def deployments_settings(env: Mapping[str, str]) -> DeploymentsSettings | None:
    """Where deployments keep their files (``HIMALIA_DEPLOYMENTS_DIR``) and the manager's socket."""
    root = env.get("HIMALIA_DEPLOYMENTS_DIR", "")
    if not root:
        return None
    return DeploymentsSettings(root=Path(root), manager_socket=Path(env["HIMALIA_DEPLOYMENTS_SOCKET"]))


def features_settings(env: Mapping[str, str]) -> FeatureSettings | None:
    """The feature store's repository (``HIMALIA_FEATURES``, JSON of :class:`FeatureSettings`)."""
    raw = env.get("HIMALIA_FEATURES", "")
    return FeatureSettings.from_json(json.loads(raw)) if raw else None


def labels_settings(env: Mapping[str, str]) -> LabelSettings | None:
    """Labeling (``HIMALIA_LABELS``, JSON of :class:`LabelSettings`)."""
    raw = env.get("HIMALIA_LABELS", "")
    return LabelSettings(**json.loads(raw)) if raw else None


def dashboards_settings(env: Mapping[str, str]) -> DashboardSettings | None:
    """Dashboards (``HIMALIA_DASHBOARDS``, JSON of :class:`DashboardSettings`)."""
    raw = env.get("HIMALIA_DASHBOARDS", "")
    return DashboardSettings(**json.loads(raw)) if raw else None


def main() -> None:
    env = os.environ
    settings = APISettings(
        prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/himalia/"),
        hub_api_url=env["JUPYTERHUB_API_URL"],
        api_token=env["JUPYTERHUB_API_TOKEN"],
        proxy_url=env["HIMALIA_PROXY_URL"],
        db_url=env["HIMALIA_API_DB_URL"],
        cookie_secret=cookie_secret(env),
        public_url=env.get("HIMALIA_PUBLIC_URL", ""),
        oauth_client_id=env.get("JUPYTERHUB_CLIENT_ID", ""),
        oauth_redirect_uri=env.get("JUPYTERHUB_OAUTH_CALLBACK_URL", ""),
        jobs=jobs_settings(env),
        deployments=deployments_settings(env),
        features=features_settings(env),
        labels=labels_settings(env),
        dashboards=dashboards_settings(env),
    )
    bind = urlparse(env["JUPYTERHUB_SERVICE_URL"])
    uvicorn.run(
        create_app(settings),
        host=bind.hostname or "127.0.0.1",
        port=bind.port or 10101,
        log_level=env.get("HIMALIA_LOG_LEVEL", "info"),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
