"""MLflow's authorization function: who is calling, from the hub instead of passwords.

MLflow's ``basic-auth`` app calls :func:`authenticate` (Flask request context) before every
request, for its Flask and its FastAPI routes, then decides with its own per-experiment and
per-registered-model permissions: the creator of one gets MANAGE, everyone else READ
(``default_permission``), admins everything; a route without a rule is refused
(``MLFLOW_BASIC_AUTH_FAIL_CLOSED``). Here:

* programs send a hub token (``MLFLOW_TRACKING_TOKEN``: the stock client sends it as
  ``Authorization: Bearer``); browsers log in through the hub's OAuth and keep the token in a
  signed cookie scoped to ``/services/mlflow/``;
* only admins and scientists get in (viewers and role-less users get 403), and the token must
  carry the scope to use this service;
* each person is an MLflow user of the same name (an MLflow admin exactly when a platform
  admin), created on first contact;
* ``users/<name>`` experiments are each person's own namespace (every kernel's default
  experiment is ``users/<name>``): nobody else may create or rename one into it.
"""

from __future__ import annotations

import os
import secrets
import threading
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from flask import Response, jsonify, make_response, redirect, request
from jupyterhub.services.auth import HubOAuth
from werkzeug.datastructures import Authorization

from ..services.api.identity import header_token, platform_roles, read_signed_cookie, sign_cookie
from .server import PREFIX

#: Hub answers about a token are trusted this long: a revoked token stops working this soon.
TOKEN_CACHE_SECONDS = 10
COOKIE_MAX_AGE = 30 * 24 * 3600
STATE_MAX_AGE = 600
USER_NAMESPACE = "users/"
_EXPERIMENT_NAMING_ROUTES = ("/mlflow/experiments/create", "/mlflow/experiments/update")

_known: dict[str, bool] = {}
_known_lock = threading.Lock()


@lru_cache(maxsize=1)
def hub_auth() -> HubOAuth:
    """The service's HubOAuth, configured from the ``JUPYTERHUB_*`` variables the hub sets."""
    return HubOAuth(cache_max_age=TOKEN_CACHE_SECONDS, cookie_options={})


@lru_cache(maxsize=1)
def cookie_secret() -> bytes:
    return Path(os.environ["HIMALIA_TRACKING_COOKIE_SECRET_FILE"]).read_bytes().strip()


def _secure() -> bool:
    return os.environ.get("HIMALIA_PUBLIC_URL", "").startswith("https:")


def _error(status: int, code: str, message: str) -> Response:
    """MLflow's own error shape, so its client shows the message."""
    return make_response(jsonify({"error_code": code, "message": message}), status)


def _set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, sign_cookie(cookie_secret(), name, value), max_age=max_age,
                        path=PREFIX + "/", httponly=True, samesite="Lax", secure=_secure())


def _wants_html() -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def _login(auth: HubOAuth, message: str) -> Response:
    """Send a browser to the hub's login; tell a program how to authenticate."""
    if not _wants_html():
        return _error(401, "UNAUTHENTICATED", message)
    state = auth.generate_state(next_url=request.full_path.rstrip("?"))
    response = redirect(f"{auth.login_url}&state={quote(state)}", 302)
    _set_cookie(response, auth.state_cookie_name, state, STATE_MAX_AGE)
    return response


def _oauth_callback(auth: HubOAuth) -> Response:
    code, state = request.args.get("code", ""), request.args.get("state", "")
    if not code or not state:
        return _error(400, "INVALID_PARAMETER_VALUE", "OAuth callback needs both 'code' and 'state'.")
    name = auth.state_cookie_name
    expected = read_signed_cookie(cookie_secret(), name, request.cookies.get(name))
    if not expected or not secrets.compare_digest(expected, state):
        return _error(403, "PERMISSION_DENIED", "OAuth state mismatch: start the login again.")
    next_url = auth.get_next_url(state)
    if not next_url.startswith(PREFIX + "/"):
        next_url = PREFIX + "/"
    token = auth.token_for_code(code, sync=True)
    response = redirect(next_url, 302)
    response.delete_cookie(name, path=PREFIX + "/")
    _set_cookie(response, auth.cookie_name, token, COOKIE_MAX_AGE)
    return response


def _ensure_mlflow_user(name: str, is_admin: bool) -> None:
    """An MLflow user for each person, an MLflow admin exactly when a platform admin."""
    from mlflow.server.auth import store  # set up by MLflow's auth app before any request

    with _known_lock:
        if _known.get(name) == is_admin:
            return
        if not store.has_user(name):
            # Never used to log in: requests authenticate with hub tokens only.
            store.create_user(name, secrets.token_urlsafe(32), is_admin=is_admin)
        elif store.get_user(name).is_admin != is_admin:
            store.update_user(name, is_admin=is_admin)
        _known[name] = is_admin


def namespace_violation(path: str, body: dict | None, name: str, is_admin: bool) -> str | None:
    """Why a request would create or rename an experiment into another person's ``users/``
    namespace; None when it does not."""
    if is_admin or not path.endswith(_EXPERIMENT_NAMING_ROUTES) or not isinstance(body, dict):
        return None
    wanted = str(body.get("new_name") or body.get("name") or "")
    if not wanted.startswith(USER_NAMESPACE):
        return None
    own = USER_NAMESPACE + name
    if wanted == own or wanted.startswith(own + "/"):
        return None
    return (f"Experiment names under '{USER_NAMESPACE}' belong to their person: name yours "
            f"'{own}' or '{own}/<something>', or choose a name outside '{USER_NAMESPACE}'.")


def authenticate() -> Authorization | Response:
    """MLflow's ``authorization_function``: the caller's MLflow user name, or the response
    that refuses the request."""
    auth = hub_auth()
    if request.path == PREFIX + "/oauth_callback":
        return _oauth_callback(auth)
    token = header_token(request)
    from_cookie = token is None
    if from_cookie:
        token = read_signed_cookie(cookie_secret(), auth.cookie_name, request.cookies.get(auth.cookie_name))
        if not token:
            return _login(auth, "Authentication required: set MLFLOW_TRACKING_TOKEN to a hub token "
                                "(himalia kernels have it) or send 'Authorization: Bearer <hub token>'.")
    model = auth.user_for_token(token, use_cache=True, sync=True)
    if not model:
        if from_cookie:
            return _login(auth, "The login has expired: log in again.")
        return _error(401, "UNAUTHENTICATED", "The token is invalid, expired or revoked.")
    if not auth.check_scopes(auth.access_scopes, model):
        return _error(403, "PERMISSION_DENIED",
                      f"The token lacks the scope to use MLflow ({', '.join(auth.access_scopes)}).")
    roles = platform_roles(model)
    if not {"admin", "scientist"} & set(roles):
        return _error(403, "PERMISSION_DENIED",
                      f"{model['name']} may not use experiment tracking: it is for scientists and "
                      "admins; ask an administrator for the scientist role.")
    name, is_admin = model["name"], "admin" in roles
    why = namespace_violation(request.path, request.get_json(silent=True), name, is_admin)
    if why:
        return _error(403, "PERMISSION_DENIED", why)
    _ensure_mlflow_user(name, is_admin)
    return Authorization("basic", {"username": name, "password": ""})
