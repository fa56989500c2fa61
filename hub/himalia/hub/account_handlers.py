"""Thin hub handlers for accounts: invitations (REST and the invitee's page), sign-up, approval.

The rules live on the authenticator (:mod:`himalia.hub.auth`) and in
:mod:`himalia.hub.invitations`; these handlers parse requests and render answers. Pages that
change state do so only on POST, where the hub checks the ``_xsrf`` form field.
"""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import isoformat, maybe_future
from nativeauthenticator import handlers as native
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape

from . import invitations
from .config import ROLE_GROUPS, ROLES

TEMPLATES = Path(__file__).with_name("templates")
INVALID_INVITATION = ("This invitation link is invalid, expired or already used; "
                      "ask your administrator for a new one.")
INVITATION_FIELDS = ("username", "role", "expires_in")


class TemplatesMixin:
    """Makes this package's templates findable even when ``template_paths`` omits them."""

    _registered = False

    def initialize(self, *args, **kwargs):
        super().initialize(*args, **kwargs)
        if not TemplatesMixin._registered:
            for key in ("jinja2_env", "jinja2_env_sync"):
                env = self.settings.get(key)
                if env is not None:
                    env.loader = ChoiceLoader([env.loader, FileSystemLoader([str(TEMPLATES)])])
            TemplatesMixin._registered = True


# -- people --------------------------------------------------------------------------------
class SignUpHandler(native.SignUpHandler):
    """NativeAuthenticator's sign-up, except for names only an invitation may claim."""

    async def post(self):
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        raw = self.get_body_argument("username", "", strip=False)
        name = self.authenticator.normalize_username(raw)
        if not self.authenticator.is_reserved_name(name):
            return await super().post()
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            alert="alert-danger",
            result_message=(f"The name {name} is reserved: an administrator set up this account. "
                            "Open the invitation link your administrator sent you to choose "
                            "its password."),
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.set_status(409)
        self.finish(html)


class InvitationHandler(TemplatesMixin, BaseHandler):
    """``/hub/invite/<token>``: the invitee chooses the password of the invited name."""

    async def prepare(self):
        # The token is a password until used: keep it out of the access and error logs
        # (which print request.uri) and out of Referer headers.
        self.token_path = self.request.path
        redacted = f"{self.hub.base_url}invite/[token]"
        self.request.uri = self.request.path = redacted
        self.set_header("Referrer-Policy", "no-referrer")
        await super().prepare()

    def _valid_invitation(self, token: str):
        invitation = invitations.find_valid(self.db, token)
        if invitation is None:
            raise web.HTTPError(404, INVALID_INVITATION)
        return invitation

    async def _render(self, invitation, error: str = "", done: bool = False):
        return await self.render_template(
            "himalia-invitation.html",
            invited_name=invitation.username,
            error=error,
            done=done,
            post_url=self.token_path,
        )

    async def get(self, token):
        self.finish(await self._render(self._valid_invitation(token)))

    async def post(self, token):
        invitation = self._valid_invitation(token)
        password = self.get_body_argument("password", "", strip=False)
        confirmation = self.get_body_argument("password_confirmation", "", strip=False)
        error = ""
        if password != confirmation:
            error = "The two passwords differ; type the same password in both fields."
        elif not self.authenticator.is_password_strong(password):
            error = f"Choose a password of {self.authenticator.password_rule()}."
        if error:
            self.set_status(400)
            self.finish(await self._render(invitation, error=error))
            return
        if not self.authenticator.accept_invitation(invitation, password):
            raise web.HTTPError(404, INVALID_INVITATION)
        self.finish(await self._render(invitation, done=True))


# -- admins --------------------------------------------------------------------------------
class AuthorizationAreaHandler(TemplatesMixin, BaseHandler):
    """``/hub/authorize``: sign-ups and their approval, as POST forms."""

    @needs_scope("admin:users")
    async def get(self):
        html = await self.render_template(
            "himalia-authorize.html",
            accounts=self.db.query(UserInfo).order_by(UserInfo.username).all(),
            invitations=invitations.pending_invitations(self.db),
            ask_email=self.authenticator.ask_email_on_signup,
        )
        self.finish(html)


class SignUpDecisionHandler(BaseHandler):
    """Base of the admin's POST-only decisions on one sign-up."""

    def sign_up_of(self, user_name: str) -> UserInfo:
        info = UserInfo.find(self.db, user_name)
        if info is None:
            raise web.HTTPError(404, f"Nobody signed up as {user_name}.")
        return info


class ToggleApprovalHandler(SignUpDecisionHandler):
    """``POST /hub/authorize/<name>``: approve a sign-up, or withdraw the approval."""

    @needs_scope("admin:users")
    async def post(self, user_name):
        info = self.sign_up_of(user_name)
        info.is_authorized = not info.is_authorized
        self.db.commit()
        self.log.info("%s %s %s", self.current_user.name,
                      "approved" if info.is_authorized else "withdrew the approval of", user_name)
        self.redirect(f"{self.hub.base_url}authorize#{url_escape(user_name)}")


class DiscardSignUpHandler(SignUpDecisionHandler):
    """``POST /hub/discard/<name>``: delete an unapproved sign-up (and its hub user, if any)."""

    @needs_scope("admin:users")
    async def post(self, user_name):
        info = self.sign_up_of(user_name)
        if info.is_authorized:
            raise web.HTTPError(
                409, f"{user_name} is approved; withdraw the approval before discarding.")
        user = self.find_user(user_name)
        if user is None:
            self.db.delete(info)
            self.db.commit()
        else:
            if user.running:
                await self.stop_single_user(user)
            await maybe_future(self.authenticator.delete_user(user))
            await user.delete_spawners()
            self.users.delete(user)
        self.log.info("%s discarded the sign-up of %s", self.current_user.name, user_name)
        self.redirect(f"{self.hub.base_url}authorize")


def invitation_model(invitation) -> dict:
    return {
        "username": invitation.username,
        "role": invitation.role,
        "created_by": invitation.created_by,
        "created_at": isoformat(invitation.created_at),
        "expires_at": isoformat(invitation.expires_at),
    }


def parse_invitation_request(body, authenticator) -> tuple[str, str | None, int | None]:
    """``(name, role, expires_in)`` from a POST body, or a 400 that names the bad field."""
    if not isinstance(body, dict):
        raise web.HTTPError(
            400, 'Send a JSON object such as {"username": "ada", "role": "scientist"}.')
    unknown = sorted(set(body) - set(INVITATION_FIELDS))
    if unknown:
        raise web.HTTPError(400, f"Unknown field(s) {', '.join(unknown)}; "
                                 f"allowed: {', '.join(INVITATION_FIELDS)}.")
    raw = body.get("username")
    if not isinstance(raw, str) or not raw.strip():
        raise web.HTTPError(400, "username is required: the hub name of the person to invite.")
    name = authenticator.normalize_username(raw)
    if not authenticator.validate_username(name):
        raise web.HTTPError(400, f"Invalid username {name!r}: {authenticator.username_rule()}.")
    role = body.get("role")
    if role is not None and role not in ROLES:
        raise web.HTTPError(400, f"role must be one of {', '.join(ROLES)}, not {role!r}.")
    expires_in = body.get("expires_in")
    most = int(invitations.MAX_LIFETIME.total_seconds())
    whole = isinstance(expires_in, int) and not isinstance(expires_in, bool)
    if expires_in is not None and not (whole and 0 < expires_in <= most):
        raise web.HTTPError(
            400, f"expires_in must be a whole number of seconds from 1 to {most} (30 days).")
    return name, role, expires_in


class InvitationListAPIHandler(APIHandler):
    """``/hub/api/invitations``: list pending invitations (GET), invite someone (POST)."""

    @needs_scope("admin:users")
    def get(self):
        pending = invitations.pending_invitations(self.db)
        self.write(json.dumps([invitation_model(i) for i in pending]))

    @needs_scope("admin:users")
    async def post(self):
        name, role, expires_in = parse_invitation_request(self.get_json_body(), self.authenticator)
        # An invitation moves its user between role groups (up to admins): only for callers
        # who could do that through the groups API themselves.
        missing = [g for g in ROLE_GROUPS.values() if not self.has_scope(f"groups!group={g}")]
        if missing:
            raise web.HTTPError(403, "Inviting gives a platform role, which needs the groups "
                                     f"scope on {', '.join(missing)}.")
        user = self.find_user(name)
        if user is None:
            user = self.user_from_username(name)
            try:
                await maybe_future(self.authenticator.add_user(user))
            except Exception as e:
                self.log.error("Failed to create user %s", name, exc_info=True)
                self.users.delete(user)
                raise web.HTTPError(400, f"Could not create the hub user {name}: {e}") from e
        issued = self.authenticator.invite(user.orm_user, role, expires_in,
                                           created_by=self.current_user.name)
        self.set_status(201)
        self.write(json.dumps({
            "username": name,
            "role": issued.invitation.role,
            "url": f"{self.hub.base_url}invite/{issued.token}",
            "expires_at": isoformat(issued.invitation.expires_at),
        }))


class InvitationAPIHandler(APIHandler):
    """``DELETE /hub/api/invitations/<name>``: revoke that name's unused invitations."""

    @needs_scope("admin:users")
    def delete(self, user_name):
        name = self.authenticator.normalize_username(user_name)
        if not invitations.revoke_invitations(self.db, name):
            raise web.HTTPError(404, f"{name} has no unused invitation.")
        self.log.info("%s revoked the invitations of %s", self.current_user.name, name)
        self.set_status(204)
