"""What every verb group of the CLI shares: its error, ports, and the running platform's facts."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import httpx

from ..config import StatePaths


class CLIError(Exception):
    """A problem the person running the command can fix; printed as one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether ``port`` can be listened on again (a port in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        # Servers set SO_REUSEADDR too, so a port whose last connections linger in
        # TIME_WAIT after a restart is reusable, as the listener would find it.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Running:
    """The platform a state directory describes, as ``himalia up`` recorded it."""

    paths: StatePaths
    runtime: dict
    admin_token: str

    @classmethod
    def load(cls, state_dir: str) -> "Running":
        paths = StatePaths(state_dir)
        if not paths.runtime.exists():
            raise CLIError(f"No himalia state in {paths.root}: run 'himalia up --state-dir {state_dir}' first.")
        token = paths.admin_token.read_text().strip() if paths.admin_token.exists() else ""
        return cls(paths, json.loads(paths.runtime.read_text()), token)

    @property
    def hub_api(self) -> str:
        return f"http://127.0.0.1:{self.runtime['hub_port']}/hub/api"

    def hub_client(self) -> httpx.Client:
        if not self.admin_token:
            raise CLIError(f"No admin token in {self.paths.admin_token}: run this as the account "
                           "that runs himalia up.")
        return httpx.Client(base_url=self.hub_api, timeout=30,
                            headers={"Authorization": f"token {self.admin_token}"})


def error_message(response: httpx.Response) -> str:
    """The message of a hub or platform API error reply."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("message") or body.get("detail") or f"HTTP {response.status_code}")
