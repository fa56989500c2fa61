"""The error a capability's rules raise for a request that cannot be carried out."""

from __future__ import annotations


class PlatformError(Exception):
    """What to tell the caller, and the HTTP status: the platform API answers it as
    ``{"status", "message"}`` (one handler in services/api/app.py), wherever it is raised."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status
