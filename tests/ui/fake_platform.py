"""Stand-ins for the himalia platform API, for JupyterLab servers started by the UI tests.

:class:`FakeClient` replaces the platform API client itself: set
``c.HimaliaExtensionApp.client_factory = fake_platform.FakeClient`` in the server's config.
"""

from __future__ import annotations


class FakeClient:
    """Answers like ``himalia.sdk.Client`` for user ``ada``; each health check is numbered."""

    def __init__(self) -> None:
        self.health_checks = 0

    async def awhoami(self) -> dict:
        """The identity of a scientist."""
        return {"name": "ada", "roles": ["scientist"], "scopes": ["read:jobs"]}

    async def ahealth(self) -> dict:
        """A platform whose MLflow service is down; the hub's detail counts the checks."""
        self.health_checks += 1
        return {
            "ok": False,
            "services": {
                "hub": {"ok": True, "detail": f"check {self.health_checks}"},
                "service:mlflow": {"ok": False, "detail": "ConnectError"},
            },
        }
