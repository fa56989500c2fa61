"""Who is calling: hub tokens for programs, hub OAuth and a signed cookie for browsers.

A browser's cookie holds its hub token signed the way tornado's ``set_secure_cookie`` signs it
(what ``HubOAuth`` does for tornado services). Every JupyterLab server shares the hub's origin,
so a page one user serves could make another user's browser send that cookie: cookie callers
must therefore present an XSRF token on anything but a plain navigation, by the rule JupyterHub
applies to its own cookies (``jupyterhub._xsrf_utils._needs_check_xsrf``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import quote

from fastapi import HTTPException, Request
from jupyterhub.services.auth import HubOAuth
from tornado.web import create_signed_value, decode_signed_value

from ...config import ADMIN_GROUP, ROLES


#: Lifetime of the browser's cookie; tornado's ``set_secure_cookie`` default.
COOKIE_MAX_AGE_DAYS = 30
#: How old a signed value may be when read back; tornado's ``get_secure_cookie`` default.
SIGNED_VALUE_MAX_AGE_DAYS = 31
XSRF_HEADER = "X-XSRFToken"
_READ_ONLY_METHODS = {"GET", "HEAD", "OPTIONS"}


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
    """Platform roles (admin, scientist, viewer) of a hub user or service model: the hub roles
    of those names it holds, and admin for members of the admins group or the admin flag."""
    roles = {r for r in model.get("roles") or [] if r in ROLES}
    if model.get("admin") or ADMIN_GROUP in (model.get("groups") or []):
        roles.add("admin")
    return sorted(roles)


def sign_cookie(secret: bytes, name: str, value: str) -> str:
    """``value`` signed for the cookie ``name``, byte for byte as ``set_secure_cookie`` would."""
    return create_signed_value(secret, name, value).decode("ascii")


def read_signed_cookie(secret: bytes, name: str, raw: str | None) -> str | None:
    """The value of a signed cookie; ``None`` when absent, expired or not signed by ``secret``."""
    if not raw:
        return None
    value = decode_signed_value(secret, name, raw, max_age_days=SIGNED_VALUE_MAX_AGE_DAYS)
    return value.decode("utf-8", "replace") if value else None


def xsrf_token(cookie_secret: bytes, hub_token: str) -> str:
    """The XSRF token of the browser session that holds ``hub_token`` in its cookie.

    For server-rendered pages that make cookie requests. Embed it only in a response that other
    pages of the origin cannot read (every API response carries ``CSP: sandbox``).
    """
    digest = hmac.new(cookie_secret, b"xsrf:" + hub_token.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def needs_xsrf(request: Request) -> bool:
    """Whether a cookie-authenticated request must carry the XSRF token.

    Only read-only navigations (``Sec-Fetch-Mode: navigate``, or no such header from an old
    browser or a program) and same-origin ``no-cors`` loads (images) skip it: their responses
    cannot be read by the page that caused them. A same-origin ``fetch()`` can, so it needs it.
    """
    mode = request.headers.get("sec-fetch-mode", "unspecified")
    site = request.headers.get("sec-fetch-site", "unspecified")
    if request.method not in _READ_ONLY_METHODS:
        return True
    navigation = mode in {"navigate", "unspecified"}
    return not (navigation or (mode == "no-cors" and site == "same-origin"))


def check_xsrf(request: Request, cookie_secret: bytes, hub_token: str) -> None:
    """403 when a cookie request that needs the XSRF token lacks it or sends another one."""
    if not needs_xsrf(request):
        return
    sent = request.headers.get(XSRF_HEADER, "")
    if not sent:
        raise HTTPException(
            403,
            f"Missing '{XSRF_HEADER}' header: a {request.method} request authenticated by the "
            "browser's cookie needs it; programs should send 'Authorization: token <hub token>'.",
        )
    if not hmac.compare_digest(sent.encode("utf-8", "replace"),
                               xsrf_token(cookie_secret, hub_token).encode("ascii")):
        raise HTTPException(403, f"The '{XSRF_HEADER}' header does not match this browser session.")


def header_token(request: Request) -> str | None:
    """The hub token of an ``Authorization: token|bearer <token>`` header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in {"token", "bearer"} and value.strip():
        return value.strip()
    return None


def wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


class BrowserLogin(Exception):
    """Raised to send a browser through the hub's OAuth flow."""

    def __init__(self, location: str, state: str, cookie_name: str):
        self.location = location
        self.state = state
        self.cookie_name = cookie_name


def _anonymous(request: Request, auth: HubOAuth, message: str) -> Exception:
    if wants_html(request):
        state = auth.generate_state(next_url=str(request.url.path))
        return BrowserLogin(f"{auth.login_url}&state={quote(state)}", state, auth.state_cookie_name)
    return HTTPException(401, message)


async def resolve_identity(request: Request, auth: HubOAuth, cookie_secret: bytes) -> Identity:
    """Check the request's token with the hub; 401/403 with a message otherwise.

    An ``Authorization`` header wins over the cookie and needs no XSRF token. A cookie whose
    signature does not verify, or whose token the hub no longer accepts, counts as no cookie.
    """
    token = header_token(request)
    from_cookie = token is None
    if from_cookie:
        raw = request.cookies.get(auth.cookie_name)
        token = read_signed_cookie(cookie_secret, auth.cookie_name, raw)
        if not token:
            raise _anonymous(
                request, auth, "Authentication required: send 'Authorization: token <hub token>'."
            )
        check_xsrf(request, cookie_secret, token)
    model = await auth.user_for_token(token, sync=False)
    if not model:
        if from_cookie:
            raise _anonymous(request, auth, "The login has expired: log in again.")
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
