"""The dask-gateway server as a hub-managed service."""

from __future__ import annotations

SERVICE = "dask-gateway"


def hub_services(cfg, paths, runtime, as_root: bool, python: str) -> list[dict]:
    """The hub service entries that run the gateway."""
    return []


def hub_roles(cfg) -> list[dict]:
    """Hub roles the gateway's service needs."""
    return []
