"""Who is calling: hub tokens for programs, hub OAuth for browsers."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import HTTPException, Request
from jupyterhub.services.auth import HubOAuth

from ...config import ROLE_GROUPS

_GROUP_ROLES = {group: role for role, group in ROLE_GROUPS.items()}


@dataclass
class Identity:
    """The authenticated caller, as the hub describes it."""

    name: str
    kind: str  # "user" or "service"
    roles: list[str]
    scopes: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "roles": self.roles, "scopes": self.scopes}


def platform_roles(model: dict) -> list[str]:
    """Platform roles (admin, scientist, viewer) of a hub user or service model."""
    roles = {_GROUP_ROLES[g] for g in model.get("groups") or [] if g in _GROUP_ROLES}
    roles.update(r for r in model.get("roles") or [] if r in ROLE_GROUPS)
    if model.get("admin"):
        roles.add("admin")
    return sorted(roles)


def request_token(request: Request, auth: HubOAuth) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in {"token", "bearer"} and value.strip():
        return value.strip()
    return request.cookies.get(auth.cookie_name)


def wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


class BrowserLogin(Exception):
    """Raised to send a browser through the hub's OAuth flow."""

    def __init__(self, location: str, state: str, cookie_name: str):
        self.location = location
        self.state = state
        self.cookie_name = cookie_name


async def resolve_identity(request: Request, auth: HubOAuth) -> Identity:
    """Check the request's token with the hub; 401/403 with a message otherwise."""
    token = request_token(request, auth)
    if not token:
        if wants_html(request):
            state = auth.generate_state(next_url=str(request.url.path))
            raise BrowserLogin(
                f"{auth.login_url}&state={quote(state)}", state, auth.state_cookie_name
            )
        raise HTTPException(401, "Authentication required: send 'Authorization: token <hub token>'.")
    model = await auth.user_for_token(token, sync=False)
    if not model:
        raise HTTPException(401, "The token is invalid, expired or revoked.")
    if not auth.check_scopes(auth.access_scopes, model):
        raise HTTPException(
            403, f"The token lacks the scope to use this service ({', '.join(auth.access_scopes)})."
        )
    return Identity(
        name=model["name"],
        kind=model.get("kind", "user"),
        roles=platform_roles(model),
        scopes=sorted(model.get("scopes") or []),
        groups=sorted(model.get("groups") or []),
    )
