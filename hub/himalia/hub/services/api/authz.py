"""Who may do what in the platform API: the one place that decides.

Routers take :func:`allow` as a router-level dependency, so every route needs a caller with a
platform role, and add ``allow("admin")`` (or another role) where a route is stricter. Routes
that act on one object call the rule helpers (:func:`require_owner_or_admin`,
:func:`require_shared`, :func:`require_role`); they raise :class:`Forbidden`, which the app
answers as ``{"status": 403, "message": ...}``. Admins pass every role check.

:data:`PUBLIC_ROUTES` lists the only routes without authorization; :func:`unprotected_routes`
finds any other, and ``create_app`` refuses to build an app that has one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import lru_cache

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.routing import BaseRoute

from ...config import ROLES
from .identity import Identity, resolve_identity

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI < 0.137.2: app.routes is already flat
    iter_route_contexts = None

#: Paths, relative to the service prefix, that anyone may call.
#: ``/oauth_callback`` is where the hub sends a browser back during login, before it has a cookie.
#: The labeling page's script and styles hold no data (labels/api.py ``asset_router``).
PUBLIC_ROUTES: frozenset[str] = frozenset({
    "/oauth_callback",
    "/static/label/labeler.js", "/static/label/labeler.css", "/static/label/page.js",
})

ADMIN = "admin"
#: Holds no general access: only routes that name it (labeling) admit it.
LABELER = "labeler"

# Only documents the header in the OpenAPI description (Swagger UI's "Authorize" button);
# identity.py reads the token itself.
_TOKEN_HEADER = APIKeyHeader(
    name="Authorization",
    scheme_name="hub token",
    description="`token <hub token>`, e.g. one from the hub's token page.",
    auto_error=False,
)
_AUTHZ_MARK = "__himalia_authz__"


class Forbidden(HTTPException):
    """The caller is known but may not do this; answered as 403 ``{status, message}``."""

    def __init__(self, message: str):
        super().__init__(403, message)


def _check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    roles = tuple(roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"Unknown platform role(s) {unknown}; valid roles: {sorted(ROLES)}")
    return roles


def has_role(who: Identity, *roles: str) -> bool:
    """Whether ``who`` is an admin or holds one of ``roles`` (no roles: any platform role but
    ``labeler``, which reaches only the routes that name it)."""
    _check_roles(roles)
    if not roles:
        return any(r != LABELER for r in who.roles)
    return ADMIN in who.roles or any(r in who.roles for r in roles)


def require_role(who: Identity, *roles: str) -> None:
    """Raise :class:`Forbidden` unless :func:`has_role`; the message says what is missing."""
    if has_role(who, *roles):
        return
    if not who.roles:
        raise Forbidden(
            f"'{who.name}' has no platform role: ask an administrator to give you one "
            f"({', '.join(ROLES)}) on the hub's People page or with 'himalia users role'."
        )
    needed = sorted({*roles, ADMIN}) if roles else [r for r in ROLES if r != LABELER]
    raise Forbidden(
        f"This needs the platform role {' or '.join(needed)}; '{who.name}' has "
        f"{', '.join(who.roles)}."
    )


def is_owner_or_admin(who: Identity, owner: str) -> bool:
    """Whether ``who`` owns the object, or is an admin."""
    return who.name == owner or ADMIN in who.roles


def require_owner_or_admin(who: Identity, owner: str, what: str = "this") -> None:
    """Only the owner of an object, or an admin, may act on it."""
    if is_owner_or_admin(who, owner):
        return
    raise Forbidden(f"Only its owner '{owner}' or an admin may act on {what}.")


def may_use_shared(name: str, roles: Iterable[str], owner: str, *, users: Iterable[str] = (),
                   groups: Iterable[str] = (), member_of: Iterable[str] = (),
                   labelers: bool = False) -> bool:
    """Whether ``name`` (holding ``roles``, in groups ``member_of``) may use an object of
    ``owner`` shared with ``users`` and ``groups``: a platform role is needed (``labeler``
    counts only where ``labelers``: label sets), then the owner, an admin, a named user or a
    member of a named group. Also for callers that are not API requests (the model router)."""
    roles = set(roles) if labelers else set(roles) - {LABELER}
    return bool(roles) and (name == owner or ADMIN in roles or name in set(users)
                            or bool(set(member_of) & set(groups)))


def require_shared(
    who: Identity,
    owner: str,
    *,
    users: Iterable[str] = (),
    groups: Iterable[str] = (),
    what: str = "this",
) -> None:
    """The owner, an admin, the named ``users`` and members of ``groups`` may see an object."""
    if may_use_shared(who.name, who.roles, owner, users=users, groups=groups, member_of=who.groups):
        return
    raise Forbidden(f"{what[:1].upper()}{what[1:]} is not shared with '{who.name}'; "
                    f"ask its owner '{owner}'.")


async def current_identity(
    request: Request, _token: str | None = Security(_TOKEN_HEADER)
) -> Identity:
    """The caller, through the hub (see identity.py); FastAPI resolves it once per request."""
    app = request.app
    return await resolve_identity(request, app.state.auth, app.state.settings.cookie_secret)


@lru_cache(maxsize=None)
def allow(*roles: str) -> Callable[..., Awaitable[Identity]]:
    """A dependency that returns the caller when they hold one of ``roles`` (or are an admin).

    No roles: any platform role. A caller without a token gets 401 (browsers: the hub's login);
    one without the role gets 403. The same roles give the same function, so FastAPI runs it
    once per request; the identity under it is resolved once however many ``allow`` apply.
    """
    _check_roles(roles)

    async def dependency(who: Identity = Depends(current_identity)) -> Identity:
        require_role(who, *roles)
        return who

    setattr(dependency, _AUTHZ_MARK, roles)
    dependency.__name__ = f"allow_{'_'.join(roles) or 'any_role'}"
    return dependency


def _authorized(dependant: Dependant | None) -> bool:
    return dependant is not None and any(
        hasattr(d.call, _AUTHZ_MARK) or _authorized(d) for d in dependant.dependencies
    )


def iter_routes(app: FastAPI) -> Iterator[tuple[BaseRoute, str, Dependant | None]]:
    """Every endpoint of ``app`` as (route, full path, dependant with its routers' dependencies).

    FastAPI 0.137.2+ keeps included routers as nodes of ``app.routes``; ``iter_route_contexts``
    flattens them. Older versions copy each route into ``app.routes``.
    """
    if iter_route_contexts is None:
        for route in app.routes:
            yield route, getattr(route, "path", repr(route)), getattr(route, "dependant", None)
        return
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        dependant = getattr(context, "dependant", None) if isinstance(route, APIRoute) else None
        yield route, context.path or repr(route), dependant


def unprotected_routes(app: FastAPI, prefix: str) -> list[str]:
    """Paths of ``app`` that neither go through :func:`allow` nor are in :data:`PUBLIC_ROUTES`."""
    public = {prefix.rstrip("/") + p for p in PUBLIC_ROUTES}
    return [
        path for route, path, dependant in iter_routes(app)
        if path not in public and not (isinstance(route, APIRoute) and _authorized(dependant))
    ]
