"""The Voilà dashboards service, managed by the hub."""

from __future__ import annotations

SERVICE = "dashboards"


def hub_services(cfg, paths, runtime, as_root: bool, python: str) -> list[dict]:
    return []


def hub_roles(cfg) -> list[dict]:
    return []
