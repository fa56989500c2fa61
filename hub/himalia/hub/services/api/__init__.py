"""The platform API: one FastAPI app behind the hub at ``/services/himalia/``.

Later capabilities (jobs, deployments, features, labels, dashboards, lineage) add routers here.
"""

from .app import APISettings, create_app

__all__ = ["APISettings", "create_app"]
