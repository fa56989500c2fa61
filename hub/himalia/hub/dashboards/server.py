"""The dashboards service as the hub runs it: a managed web service behind the hub's OAuth."""

from __future__ import annotations

import json
from pathlib import Path

SERVICE = "dashboards"
ROLE = "himalia-dashboards"


def service_config(cfg, paths, runtime, as_root: bool) -> dict:
    """What ``render.py`` reads from ``HIMALIA_DASHBOARDS_SERVICE``."""
    return {
        "db_url": cfg.resolved_api_db_url(runtime.api_db_password),
        "root": str(Path(paths.root) / "dashboards"),
        "state_dir": str(paths.root),
        # The platform API on loopback, for the linked jobs' outputs (with the owner's token).
        "api_url": f"http://127.0.0.1:{runtime.api_port}/services/himalia/",
        "public_url": cfg.resolved_public_url(),
        "system_users": bool(cfg.system_users and as_root),
        "user_prefix": cfg.system_user_prefix,
        "account_registry": str(paths.accounts),
        "pool_size": cfg.dashboard_pool_size,
        "refill_delay": cfg.dashboard_refill_delay,
        "kernel_idle_seconds": cfg.dashboard_kernel_idle_seconds,
    }


def hub_services(cfg, paths, runtime, as_root: bool, python: str, base_scopes: list[str] = ()) -> list[dict]:
    """Voilà as a hub-managed service. As root it stays root only to start each dashboard's
    kernels as its owner's account (system users); without system users it runs as the
    platform's service account, so no kernel ever runs as root."""
    from .. import hubconfig

    account = {}
    if as_root:
        account = {"cwd": str(paths.root)}
        if not cfg.system_users:
            account["user"] = cfg.service_user
    return [{
        "name": SERVICE,
        "display": True,
        "info": {"description": "Dashboards: published notebooks, rendered by Voilà"},
        "url": f"http://127.0.0.1:{runtime.dashboards_port}",
        "command": [python, "-m", hubconfig.TIED, "himalia.hub.dashboards.render"],
        "environment": {"HIMALIA_DASHBOARDS_SERVICE": json.dumps(service_config(cfg, paths, runtime, as_root))},
        "oauth_no_confirm": True,
        # The person's roles and groups decide which dashboards they see.
        "oauth_client_allowed_scopes": [*hubconfig.BASE_SCOPES, f"access:services!service={SERVICE}"],
        **account,
    }]


def hub_roles(cfg) -> list[dict]:
    return [{"name": ROLE, "description": "The dashboards service: owners' tokens to read their "
             "linked jobs' outputs, and their accounts", "scopes": ["tokens", "read:users"],
             "services": [SERVICE]}]
