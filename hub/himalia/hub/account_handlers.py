"""Thin hub handlers for accounts: invitations (REST and the invitee's page), sign-up, approval,
the admins' People page, and the checks on names JupyterHub's user API leaves out.

The rules live on the authenticator (:mod:`himalia.hub.auth`) and in
:mod:`himalia.hub.invitations`; these handlers parse requests and render answers. Pages that
change state do so only on POST, where the hub checks the ``_xsrf`` form field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub import orm
from jupyterhub.apihandlers import users
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers import BaseHandler
from jupyterhub.scopes import needs_scope
from jupyterhub.utils import isoformat, maybe_future
from nativeauthenticator import handlers as native
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape

from . import invitations
from .config import ADMIN_GROUP, ROLES

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
    """NativeAuthenticator's sign-up, with the name rule on the page, a clear refusal of
    invalid names, and no sign-up under names only an invitation may claim."""

    async def _refuse(self, status: int, message: str, username: str = "") -> None:
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            alert="alert-danger",
            result_message=message,
            username=username,
            two_factor_auth=self.authenticator.allow_2fa,
            recaptcha_key=self.authenticator.recaptcha_key,
            tos=self.authenticator.tos,
        )
        self.set_status(status)
        self.finish(html)

    async def post(self):
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        raw = self.get_body_argument("username", "", strip=False)
        try:
            name = self.authenticator.checked_username(raw)
        except web.HTTPError as e:
            await self._refuse(400, e.log_message, username=raw)
            return
        if self.authenticator.is_reserved_name(name):
            await self._refuse(
                409,
                f"The name {name} is reserved: an administrator set up this account. Open the "
                "invitation link your administrator sent you to choose its password.",
                username=name,
            )
        else:
            await super().post()


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
        raise web.HTTPError(400, "username is required: the hub name of the person to invite "
                                 f"({authenticator.username_rule()}).")
    name = authenticator.checked_username(raw)
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


def check_may_give_role(handler, role: str | None) -> None:
    """Making someone an admin needs what adding them to the admins group through the groups
    API would need (other roles: ``admin:users``, which the handlers check)."""
    if role == "admin" and not handler.has_scope(f"groups!group={ADMIN_GROUP}"):
        raise web.HTTPError(403, f"Making someone an admin needs the groups scope on {ADMIN_GROUP}.")


class InvitingMixin:
    """Invites someone on behalf of the logged-in admin (REST API and People page)."""

    async def invite_person(self, name: str, role: str | None = None,
                            expires_in: int | None = None) -> invitations.IssuedInvitation:
        """Create the hub user ``name`` if needed and give them a fresh invitation."""
        check_may_give_role(self, role)
        user = self.find_user(name)
        if user is None:
            user = self.user_from_username(name)
            try:
                await maybe_future(self.authenticator.add_user(user))
            except Exception as e:
                self.log.error("Failed to create user %s", name, exc_info=True)
                self.users.delete(user)
                raise web.HTTPError(400, f"Could not create the hub user {name}: {e}") from e
        return self.authenticator.invite(user.orm_user, role, expires_in,
                                         created_by=self.current_user.name)


class InvitationListAPIHandler(InvitingMixin, APIHandler):
    """``/hub/api/invitations``: list pending invitations (GET), invite someone (POST)."""

    @needs_scope("admin:users")
    def get(self):
        pending = invitations.pending_invitations(self.db)
        self.write(json.dumps([invitation_model(i) for i in pending]))

    @needs_scope("admin:users")
    async def post(self):
        name, role, expires_in = parse_invitation_request(self.get_json_body(), self.authenticator)
        issued = await self.invite_person(name, role, expires_in)
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


# -- names in JupyterHub's user API ----------------------------------------------------------
class UserListAPIHandler(users.UserListAPIHandler):
    """``POST /hub/api/users`` (the admin page's "Add Users"): every name is checked before
    anyone is created; one bad name refuses the whole request, naming each bad one and why."""

    @needs_scope("admin:users")
    async def post(self):
        data = self.get_json_body()
        names = data.get("usernames") if isinstance(data, dict) else None
        if isinstance(names, list) and names:
            refused = self.authenticator.refused_usernames(names)
            if refused:
                raise web.HTTPError(400, refused)
        # JupyterHub's own handler normalises the (now valid) names and creates the users.
        return await super().post()


class UserAPIHandler(users.UserAPIHandler):
    """``/hub/api/users/<name>``: names are normalised as at login (``Bob`` is ``bob``) and an
    invalid one is a 400 that says what names are allowed."""

    def _existing_or_normal(self, user_name: str) -> str:
        normal = self.authenticator.normalize_username(user_name)
        # Most requests name a user as stored: no extra database lookup on this hot path.
        # A user created before names were normalised keeps answering under its own name.
        if normal == user_name or self.find_user(user_name) is None:
            return normal
        return user_name

    @needs_scope("admin:users")
    async def post(self, user_name):
        name = self.authenticator.checked_username(user_name)
        return await super().post(name)

    async def get(self, user_name):
        return await super().get(self._existing_or_normal(user_name))

    async def delete(self, user_name):
        return await super().delete(self._existing_or_normal(user_name))

    @needs_scope("admin:users")
    async def patch(self, user_name):
        data = self.get_json_body()
        if isinstance(data, dict) and "name" in data:
            self.authenticator.checked_username(data["name"])
        return await super().patch(self._existing_or_normal(user_name))


# -- the People page --------------------------------------------------------------------------
@dataclass
class Person:
    """One row of the People page."""

    name: str
    role: str | None = None
    admin: bool = False
    has_password: bool = False
    approved: bool = False
    signed_up: bool = False
    invitation: object | None = None
    hub_user: bool = True

    @property
    def sign_up_pending(self) -> bool:
        return self.signed_up and not self.approved


def people(db, authenticator) -> list[Person]:
    """Every hub user and every sign-up, by name, with role, password and what is pending."""
    infos = {info.username: info for info in db.query(UserInfo)}
    pending = {invitation.username: invitation
               for invitation in invitations.pending_invitations(db)}
    found = []
    for user in db.query(orm.User).order_by(orm.User.name):
        info = infos.pop(user.name, None)
        found.append(Person(
            name=user.name, role=authenticator.role_of(user), admin=bool(user.admin),
            has_password=info is not None, approved=bool(info and info.is_authorized),
            signed_up=info is not None, invitation=pending.get(user.name),
        ))
    # Sign-ups become hub users at their first login.
    for name, info in infos.items():
        found.append(Person(name=name, has_password=True, approved=bool(info.is_authorized),
                            signed_up=True, invitation=pending.get(name), hub_user=False))
    return sorted(found, key=lambda person: person.name)


class PeopleHandler(TemplatesMixin, InvitingMixin, BaseHandler):
    """``/hub/people``: everyone with their platform role, password, invitation and sign-up;
    the invite form (POST) shows the new invitation link once."""

    async def _render(self, **ns) -> str:
        everyone = people(self.db, self.authenticator)
        return await self.render_template(
            "himalia-people.html",
            people=everyone,
            pending_signups=sum(person.sign_up_pending for person in everyone),
            roles=ROLES,
            default_role=self.authenticator.default_role,
            username_rule=self.authenticator.username_rule(),
            **ns,
        )

    def _absolute(self, path: str) -> str:
        public = self.settings.get("public_url")
        if public:
            return f"{public.scheme}://{public.netloc}{path}"
        return f"{self.request.protocol}://{self.request.host}{path}"

    @web.authenticated
    @needs_scope("admin:users")
    async def get(self):
        self.finish(await self._render())

    @needs_scope("admin:users")
    async def post(self):
        raw = self.get_body_argument("username", "").strip()
        role = self.get_body_argument("role", "") or None
        try:
            name, role, _ = parse_invitation_request({"username": raw, "role": role},
                                                     self.authenticator)
            issued = await self.invite_person(name, role)
        except web.HTTPError as e:
            self.set_status(e.status_code)
            self.finish(await self._render(error=e.log_message, typed_name=raw, typed_role=role))
            return
        # The link is a password until used: shown in this answer only, never cached.
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(await self._render(
            invited=issued.invitation,
            invitation_link=self._absolute(f"{self.hub.base_url}invite/{issued.token}"),
        ))


# -- roles --------------------------------------------------------------------------------------
def parse_role(value) -> str | None:
    """A platform role from a request (``None``, ``""`` or ``"none"``: no role), or a 400."""
    if value in (None, "", "none"):
        return None
    if value not in ROLES:
        raise web.HTTPError(400, f"role must be one of {', '.join(ROLES)} or none, not {value!r}.")
    return value


class RoleChangeMixin:
    """Changes the platform role of one hub user on behalf of the logged-in admin."""

    def change_role(self, user_name: str, role: str | None):
        check_may_give_role(self, role)
        user = self.find_user(self.authenticator.normalize_username(user_name))
        if user is None:
            raise web.HTTPError(404, f"No user {user_name}.")
        if role != "admin" and user.name in self.authenticator.admin_users:
            raise web.HTTPError(409, f"{user.name} is an administrator by configuration "
                                     "(c.HimaliaConfig.admin_user / Authenticator.admin_users).")
        self.authenticator.assign_role(user.orm_user, role)
        self.log.info("%s gave %s the platform role %s", self.current_user.name, user.name, role)
        return user


class UserRoleAPIHandler(RoleChangeMixin, APIHandler):
    """``PUT /hub/api/users/<name>/role`` with ``{"role": "admin"|"scientist"|"viewer"|null}``;
    ``GET`` answers ``{"name", "role"}``."""

    @needs_scope("admin:users")
    def get(self, user_name):
        user = self.find_user(self.authenticator.normalize_username(user_name))
        if user is None:
            raise web.HTTPError(404, f"No user {user_name}.")
        self.write(json.dumps({"name": user.name, "role": self.authenticator.role_of(user.orm_user)}))

    @needs_scope("admin:users")
    def put(self, user_name):
        body = self.get_json_body()
        if not isinstance(body, dict) or set(body) != {"role"}:
            raise web.HTTPError(400, 'Send {"role": "admin" | "scientist" | "viewer" | null}.')
        user = self.change_role(user_name, parse_role(body["role"]))
        self.write(json.dumps({"name": user.name, "role": self.authenticator.role_of(user.orm_user)}))


class PersonRoleHandler(RoleChangeMixin, BaseHandler):
    """``POST /hub/people/<name>/role``: the People page's role menu."""

    @needs_scope("admin:users")
    async def post(self, user_name):
        self.change_role(user_name, parse_role(self.get_body_argument("role", "")))
        self.redirect(f"{self.hub.base_url}people#{url_escape(user_name)}")
