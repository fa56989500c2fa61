"""A small typed client over httpx, synchronous and asynchronous."""

from __future__ import annotations

import os
from typing import Any, Mapping

import httpx

DEFAULT_TIMEOUT = 10.0


class HimaliaError(Exception):
    """The platform could not be reached or refused a call; ``status`` is the HTTP status or 0."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def json_or_raise(response: httpx.Response) -> Any:
    """The JSON of a response (None when empty), or :class:`HimaliaError` with the platform's
    message."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        message = response.json().get("message") or response.reason_phrase
    except ValueError:
        message = response.reason_phrase
    raise HimaliaError(f"{response.request.url.path}: {message}", response.status_code)


class Client:
    """Calls ``<api_url>api/v1/...`` with the caller's hub token."""

    def __init__(self, api_url: str, token: str, timeout: float = DEFAULT_TIMEOUT):
        if not api_url:
            raise HimaliaError("No platform API URL: set HIMALIA_API_URL.")
        if not token:
            raise HimaliaError("No hub token: set JUPYTERHUB_API_TOKEN.")
        self.api_url = api_url.rstrip("/") + "/"
        self._headers = {"Authorization": f"token {token}"}
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Client":
        """The client a kernel or single-user server gets from its environment."""
        env = os.environ if env is None else env
        return cls(env.get("HIMALIA_API_URL", ""), env.get("JUPYTERHUB_API_TOKEN", ""))

    @property
    def headers(self) -> dict:
        """The ``Authorization`` header this client sends (for calls outside ``api/v1``)."""
        return dict(self._headers)

    def _url(self, path: str) -> str:
        return self.api_url + "api/v1/" + path.lstrip("/")

    def request(self, method: str, path: str, **kwargs) -> Any:
        try:
            with httpx.Client(headers=self._headers, timeout=self.timeout) as http:
                return json_or_raise(http.request(method, self._url(path), **kwargs))
        except httpx.HTTPError as e:
            raise HimaliaError(f"Cannot reach the platform API at {self.api_url}: {e}") from e

    async def arequest(self, method: str, path: str, **kwargs) -> Any:
        try:
            async with httpx.AsyncClient(headers=self._headers, timeout=self.timeout) as http:
                return json_or_raise(await http.request(method, self._url(path), **kwargs))
        except httpx.HTTPError as e:
            raise HimaliaError(f"Cannot reach the platform API at {self.api_url}: {e}") from e

    def raw(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The response itself (for files: notebooks, HTML, Parquet); errors raise as usual."""
        try:
            with httpx.Client(headers=self._headers, timeout=self.timeout) as http:
                response = http.request(method, self._url(path), **kwargs)
        except httpx.HTTPError as e:
            raise HimaliaError(f"Cannot reach the platform API at {self.api_url}: {e}") from e
        if response.status_code >= 400:
            json_or_raise(response)
        return response

    def whoami(self) -> dict:
        """``{"name", "kind", "roles", "scopes"}`` of the token's owner."""
        return self.request("GET", "whoami")

    def health(self) -> dict:
        """``{"ok": bool, "services": {name: {"ok", "detail"}}}``."""
        return self.request("GET", "health")

    async def awhoami(self) -> dict:
        return await self.arequest("GET", "whoami")

    async def ahealth(self) -> dict:
        return await self.arequest("GET", "health")
