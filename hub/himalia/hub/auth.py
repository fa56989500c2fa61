"""Login for a small team on one machine: hub-kept accounts, invitations and admin approval.

:class:`HimaliaAuthenticator` is NativeAuthenticator plus what the platform needs:

* the first administrator is bootstrapped from a one-time password file, and that password
  stops working after ``bootstrap_password_lifetime``;
* a person an admin created gets in only through a single-use, expiring invitation link
  (``POST /hub/api/invitations``), never by signing up under that name;
* failed logins are throttled per (source, name), per source and per sprayed password, in the
  hub database (:mod:`himalia.hub.throttle`);
* every user the hub adds lands in the group of the configured default role.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import bcrypt
from jupyterhub import orm, roles
from jupyterhub.utils import maybe_future
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ChangePasswordAdminHandler, ChangePasswordHandler
from nativeauthenticator.orm import UserInfo
from oauthenticator.generic import GenericOAuthenticator
from sqlalchemy import delete, func
from sqlalchemy.orm import object_session
from tornado import web
from tornado.web import RequestHandler
from traitlets import Integer, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from . import account_handlers as h
from . import invitations
from .account_models import Invitation, PasswordExpiry, create_tables, utcnow
from .config import ADMIN_GROUP, LEGACY_ROLE_GROUPS, ROLES, USER_ROLES
from .throttle import LoginThrottle, ThrottlePolicy

#: Every route HimaliaAuthenticator adds under the hub prefix (``/hub``).
ROUTES = [
    # Ahead of JupyterHub's own handlers for these paths (init_handlers puts an
    # authenticator's first): they check user names before JupyterHub creates anyone.
    (r"/api/users", h.UserListAPIHandler),
    (r"/api/users/([^/]+)", h.UserAPIHandler),
    (r"/api/users/([^/]+)/role", h.UserRoleAPIHandler),
    (r"/people", h.PeopleHandler),
    (r"/people/([^/]+)/role", h.PersonRoleHandler),
    (r"/signup", h.SignUpHandler),
    (r"/invite/([^/]+)", h.InvitationHandler),
    (r"/authorize", h.AuthorizationAreaHandler),
    (r"/authorize/([^/]+)", h.ToggleApprovalHandler),
    (r"/discard/([^/]+)", h.DiscardSignUpHandler),
    (r"/change-password", ChangePasswordHandler),
    (r"/change-password/([^/]+)", ChangePasswordAdminHandler),
    (r"/api/invitations", h.InvitationListAPIHandler),
    (r"/api/invitations/([^/]+)", h.InvitationAPIHandler),
]
_STATE_CHANGING = ("post", "put", "patch", "delete")
#: bcrypt uses at most this many bytes of a password (and refuses longer ones).
MAX_PASSWORD_BYTES = 72


def state_changing_routes() -> list[tuple[str, type, tuple[str, ...]]]:
    """``(path, handler, methods)`` for each route of :data:`ROUTES` whose handler implements
    a state-changing method (POST, PUT, PATCH, DELETE); GET never changes state on them."""
    found = []
    for path, handler in ROUTES:
        methods = tuple(m.upper() for m in _STATE_CHANGING
                        if getattr(handler, m) is not getattr(RequestHandler, m))
        if methods:
            found.append((path, handler, methods))
    return found


def shown_name(raw, limit: int = 40) -> str:
    """``raw`` quoted for a message, cut short when long (anything can be typed as a name)."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def client_address(handler, trusted_proxies=()) -> str:
    """The address of the person logging in, as the public proxy saw it.

    That is the last ``X-Forwarded-For`` hop (the proxy appends its peer) not in
    ``trusted_proxies``. ``X-Real-Ip``, which Tornado would prefer, is ignored: clients set it
    themselves and the proxy passes it on.
    """
    if handler is None:
        return "unknown"
    request = handler.request
    forwarded = request.headers.get("X-Forwarded-For", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    context = getattr(request.connection, "context", None)
    return getattr(context, "_orig_remote_ip", None) or request.remote_ip or "unknown"


def platform_role_of(orm_user) -> str | None:
    """The platform role of a hub user: admin (admin flag or group), else scientist or viewer
    (JupyterHub roles the user holds directly), else None."""
    if orm_user.admin or any(group.name == ADMIN_GROUP for group in orm_user.groups):
        return "admin"
    held = {role.name for role in orm_user.roles}
    return next((role for role in USER_ROLES if role in held), None)


def role_members(db_url: str) -> dict[str, list[str]]:
    """Who holds each of ``USER_ROLES`` in the hub database at ``db_url`` now (users of the old
    role groups included), read before the hub starts.

    JupyterHub sets the members of every role in ``load_roles`` to exactly those listed there,
    so the configuration lists the current ones: otherwise each restart would strip everyone's
    role. A database without the hub's tables yet has nobody.
    """
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.orm import Session

    members: dict[str, list[str]] = {role: [] for role in USER_ROLES}
    engine = create_engine(db_url)
    try:
        if not inspect(engine).has_table("roles"):
            return members
        with Session(engine) as db:
            for role in USER_ROLES:
                found = orm.Role.find(db, role)
                names = {u.name for u in found.users} if found is not None else set()
                legacy = LEGACY_ROLE_GROUPS.get(role)
                group = orm.Group.find(db, legacy) if legacy else None
                if group is not None:
                    names |= {u.name for u in group.users if platform_role_of(u) is None}
                members[role] = sorted(names)
    finally:
        engine.dispose()
    return members


def set_platform_role(db, orm_user, role: str | None) -> None:
    """Give ``orm_user`` exactly the platform role ``role`` (None: no role at all).

    Admins are the members of the ``admins`` group; scientists and viewers hold the JupyterHub
    role itself, with no group, which keeps the hub's per-request user lookups as cheap as
    for a user in no group.
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    admins = orm.Group.find(db, ADMIN_GROUP)
    if role == "admin":
        if admins is None:
            raise web.HTTPError(409, f"The hub has no group {ADMIN_GROUP}; add it to JupyterHub.load_groups.")
        if admins not in orm_user.groups:
            orm_user.groups.append(admins)
    else:
        orm_user.groups = [g for g in orm_user.groups if g.name != ADMIN_GROUP]
        if orm_user.admin:
            orm_user.admin = False
            roles.assign_default_roles(db, orm_user)
    for name in USER_ROLES:
        held = any(r.name == name for r in orm_user.roles)
        if name == role and not held:
            roles.grant_role(db, orm_user, name, commit=False)
        elif name != role and held:
            roles.strip_role(db, orm_user, name, commit=False)
    db.commit()


class RoleMixin(LoggingConfigurable):
    """Gives every user the hub adds the default platform role, and moves users of the old
    role groups (``scientists``, ``viewers``) to the roles themselves."""

    default_role = Unicode(
        "scientist",
        help="Platform role a newly added user gets when they have none.",
    ).tag(config=True)

    @validate("default_role")
    def _valid_default_role(self, proposal):
        if proposal.value not in ROLES:
            raise TraitError(f"default_role must be one of {', '.join(ROLES)}, not {proposal.value!r}")
        return proposal.value

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The hub creates its roles before its authenticator; a new database has nothing to move.
        if all(orm.Role.find(self.db, role) is not None for role in USER_ROLES):
            self.migrate_role_groups(self.db)

    def migrate_role_groups(self, db) -> None:
        """Users of the role groups earlier versions used get the role itself instead."""
        for role, group_name in LEGACY_ROLE_GROUPS.items():
            group = orm.Group.find(db, group_name)
            if group is None:
                continue
            for orm_user in list(group.users):
                if platform_role_of(orm_user) is None:
                    roles.grant_role(db, orm_user, role, commit=False)
                self.log.info("Moved %s from group %s to role %s", orm_user.name, group_name, role)
            group.users = []
        db.commit()

    async def add_user(self, user):
        await maybe_future(super().add_user(user))
        # init_users passes the ORM object, the REST API and login pass its wrapper.
        orm_user = getattr(user, "orm_user", user)
        if platform_role_of(orm_user) is not None:
            return
        set_platform_role(object_session(orm_user), orm_user, self.default_role)
        self.log.info("Gave %s the platform role %s", user.name, self.default_role)


class HimaliaAuthenticator(RoleMixin, NativeAuthenticator):
    """NativeAuthenticator with bootstrap, invitations, login throttling and platform roles."""

    bootstrap_password_file = Unicode(
        "",
        help="""File holding the first administrator's password, written once by ``himalia up``.

        When the file exists and an admin has no account yet, the account is created with
        this password and the file is deleted.
        """,
    ).tag(config=True)

    bootstrap_password_lifetime = Integer(
        24 * 3600,
        help="""Seconds the bootstrapped administrator's one-time password works (0: forever).

        After that, logging in with it says it expired; changing the password, or an
        invitation (``himalia users invite <name>``), gives the account a lasting one.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    invitation_lifetime = Integer(
        7 * 24 * 3600,
        help="""Seconds an invitation link works unless the request says ``expires_in``
        (at most 30 days).

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    lockout_failures = Integer(
        5,
        help="""Failed logins for one name from one address, within ``lockout_window``,
        that lock that pair for ``lockout_seconds`` (even the right password is refused).

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    source_failures = Integer(
        30,
        help="""Failed logins from one address across all names, within ``lockout_window``,
        that lock that address for ``lockout_seconds``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    spray_names = Integer(
        5,
        help="""Distinct names one wrong password may fail for, within ``lockout_window``,
        before that password is refused for everyone for ``lockout_seconds``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    lockout_window = Integer(
        900,
        help="""Seconds over which failed logins are counted.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    lockout_seconds = Integer(
        300,
        help="""Seconds a lock lasts.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    trusted_proxies = List(
        Unicode(),
        help="""Addresses of reverse proxies in front of himalia's public proxy.

        A login's source address is the last ``X-Forwarded-For`` hop not listed here; with
        nothing listed it is the address that connected to the public proxy.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    username_help = Unicode(
        "",
        help="""Valid user names in words, for error messages (for example "at most 20
        characters of a-z, 0-9, _ and -, starting with a letter or digit"). Empty: the
        messages quote ``username_pattern``.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @validate("lockout_failures", "source_failures", "spray_names", "lockout_window",
              "lockout_seconds")
    def _positive(self, proposal):
        if proposal.value < 1:
            raise TraitError(f"{proposal.trait.name} must be at least 1, not {proposal.value}")
        return proposal.value

    @validate("invitation_lifetime")
    def _valid_lifetime(self, proposal):
        if not 0 < proposal.value <= invitations.MAX_LIFETIME.total_seconds():
            raise TraitError("invitation_lifetime must be between 1 second and 30 days (2592000)")
        return proposal.value

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        create_tables(self.db.get_bind())
        if self.allowed_failed_logins:
            # NativeAuthenticator's in-memory per-name counter lets anyone lock anyone out.
            self.log.warning("Ignoring allowed_failed_logins; use lockout_failures instead")
            self.allowed_failed_logins = 0
        self._login_lock = asyncio.Lock()
        self._dummy_hash: bytes | None = None
        self._bootstrap_admins()

    def _bootstrap_admins(self) -> None:
        path = Path(self.bootstrap_password_file) if self.bootstrap_password_file else None
        if path is None or not path.exists():
            return
        password = path.read_text().strip()
        for name in sorted(self.admin_users):
            if self.get_user(name) is None:
                hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
                self.db.add(UserInfo(username=name, password=hashed, is_authorized=True))
                if self.bootstrap_password_lifetime > 0:
                    expires = utcnow() + timedelta(seconds=self.bootstrap_password_lifetime)
                    self.db.merge(PasswordExpiry(username=name, expires_at=expires))
                self.log.info("Bootstrapped the administrator account %s", name)
        self.db.commit()
        path.unlink()

    def get_handlers(self, app):
        # No /login: the hub's own LoginHandler shows errors raised by authenticate
        # (NativeAuthenticator's needs the statsd client JupyterHub 6 removed).
        # Hub pages show admins the number of sign-ups waiting for approval (the navigation
        # bar in templates/page.html) and everyone the rule for names; configured
        # template_vars win.
        app.template_vars.setdefault("himalia_pending_signups", self.pending_signups)
        app.template_vars.setdefault("himalia_username_rule", self.username_rule())
        return list(ROUTES)

    def pending_signups(self, user=None) -> int:
        """How many sign-ups wait for an administrator's approval (0 for pages nobody is
        logged in to, which show no count)."""
        if user is None:
            return 0
        return (self.db.query(func.count(UserInfo.username))
                .filter(UserInfo.is_authorized.is_(False)).scalar() or 0)

    # -- login -------------------------------------------------------------------------------
    def login_throttle(self) -> LoginThrottle:
        policy = ThrottlePolicy(
            pair_failures=self.lockout_failures, source_failures=self.source_failures,
            spray_names=self.spray_names, window=self.lockout_window,
            lock_seconds=self.lockout_seconds,
        )
        return LoginThrottle(self.db, policy)

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username") or "")
        password = data.get("password") or ""
        source = client_address(handler, self.trusted_proxies)
        # One login at a time: otherwise parallel attempts all pass the lock check while
        # their passwords are being hashed.
        async with self._login_lock:
            throttle = self.login_throttle()
            lock = throttle.active_lock(source, username, password)
            if lock is not None:
                self.log.warning("Login for %r from %s refused: %s lock",
                                 username[:32], source, lock.kind)
                raise web.HTTPError(429, lock.message(throttle.clock()))
            info = self.get_user(username)
            valid = await self._password_matches(info, password)
            if valid and info.has_2fa:
                valid = info.is_valid_token(data.get("2fa"))
            if not valid:
                lock = throttle.record_failure(source, username, password)
                if lock is not None:
                    self.log.warning("Failed logins from %s locked (%s)", source, lock.kind)
                return None
        # From here on the password was right, so saying why it is refused reveals nothing.
        if not info.is_authorized:
            raise web.HTTPError(403, "Your account has not been approved by an administrator yet.")
        expiry = self.db.get(PasswordExpiry, info.username)
        if expiry is not None and expiry.expires_at <= utcnow():
            raise web.HTTPError(
                403,
                f"The one-time password of {info.username} has expired. An administrator can "
                f"send you a new link with: himalia users invite {info.username}.",
            )
        throttle.record_success(source, username)
        return info.username

    async def _password_matches(self, info: UserInfo | None, password: str) -> bool:
        if self._dummy_hash is None:
            self._dummy_hash = bcrypt.hashpw(b"no such account", bcrypt.gensalt())
        # Unknown names cost a hash too, so timing tells nothing about which names exist.
        stored = bytes(info.password) if info is not None else self._dummy_hash
        encoded = password.encode("utf-8", "replace")
        # bcrypt refuses longer passwords, and no stored hash can come from one.
        fits = len(encoded) <= MAX_PASSWORD_BYTES
        ok = await asyncio.to_thread(bcrypt.checkpw, encoded[:MAX_PASSWORD_BYTES], stored)
        return ok and fits and info is not None

    # -- accounts ----------------------------------------------------------------------------
    def is_reserved_name(self, username: str) -> bool:
        """Whether ``username`` may only be claimed through an invitation."""
        return username in self.admin_users or orm.User.find(self.db, username) is not None

    def get_authed_users(self):
        """Names whose account an admin approved (or an invitation set up); nothing else."""
        return {name for (name,) in self.db.query(UserInfo.username).filter(UserInfo.is_authorized)}

    def is_password_strong(self, password):
        return (len(password.encode("utf-8", "replace")) <= MAX_PASSWORD_BYTES
                and super().is_password_strong(password))

    def password_rule(self) -> str:
        """What a strong enough password looks like, for error messages."""
        rule = (f"at least {self.minimum_password_length} characters and at most "
                f"{MAX_PASSWORD_BYTES} bytes")
        if self.check_common_password:
            rule += ", and not a common password"
        return rule

    def create_user(self, username, password, **kwargs):
        if self.is_reserved_name(self.normalize_username(username)):
            return None
        return super().create_user(username, password, **kwargs)

    def change_password(self, username, new_password):
        changed = super().change_password(username, new_password)
        if changed:
            self._clear_expiry(self.normalize_username(username))
        return changed

    def delete_user(self, user):
        self.db.execute(delete(Invitation).where(Invitation.username == user.name))
        self._clear_expiry(user.name)
        return super().delete_user(user)

    def _clear_expiry(self, username: str) -> None:
        self.db.execute(delete(PasswordExpiry).where(PasswordExpiry.username == username))
        self.db.commit()

    def username_rule(self) -> str:
        """What a valid name looks like, for error messages."""
        if self.username_help:
            return self.username_help
        rule = "a name may not be empty or contain spaces, commas or slashes"
        if self.username_pattern:
            rule += f", and must match the regular expression {self.username_pattern}"
        return rule

    def username_fault(self, raw) -> tuple[str, str | None]:
        """``(normalised name, what is wrong with it)``; the fault is None for a valid name.

        Names are normalised the way login and sign-up do it (lowercase, ``username_map``),
        so one name is one person everywhere.
        """
        if not isinstance(raw, str):
            return "", "is not a string"
        if not raw:
            return "", "is empty"
        name = self.normalize_username(raw)
        if self.validate_username(name):
            return name, None
        return name, "; ".join(self._faults(name)) or "does not match the rule"

    def _faults(self, name: str) -> list[str]:
        # Probes around a name the rule surely allows say which part of ``name`` breaks it.
        valid = self.validate_username
        if not valid("a"):
            return []
        faults = []
        if not valid("a" * len(name)):
            faults.append(f"has {len(name)} characters, too many")
        bad = sorted({c for c in name if not valid("a" + c + "a") and not valid("a" + c)})
        if bad:
            listed = ", ".join(repr(c) for c in bad)
            faults.append(f"{listed} {'is' if len(bad) == 1 else 'are'} not allowed")
        elif not valid(name[0] + "a"):
            faults.append(f"starts with {name[0]!r}")
        return faults

    def checked_username(self, raw) -> str:
        """The normalised form of ``raw``, or a 400 that says what is wrong and what names
        are allowed."""
        name, fault = self.username_fault(raw)
        if fault:
            raise web.HTTPError(400, f"Invalid user name {shown_name(raw)}: {fault}. "
                                     f"Allowed: {self.username_rule()}.")
        return name

    def refused_usernames(self, raws: list) -> str | None:
        """For a batch of names: a message naming each invalid one and why, or None."""
        faults = [(raw, self.username_fault(raw)[1]) for raw in raws]
        bad = [f"{shown_name(raw)} ({fault})" for raw, fault in faults if fault]
        if not bad:
            return None
        return (f"No user was created: {len(bad)} of {len(raws)} names are invalid: "
                f"{', '.join(bad)}. Allowed: {self.username_rule()}.")

    # -- invitations -------------------------------------------------------------------------
    def role_of(self, orm_user) -> str | None:
        """The platform role of ``orm_user``, if any."""
        return platform_role_of(orm_user)

    def assign_role(self, orm_user, role: str | None) -> None:
        """Give ``orm_user`` exactly ``role`` (None: no platform role)."""
        set_platform_role(object_session(orm_user) or self.db, orm_user, role)

    def invite(self, orm_user, role: str | None = None, expires_in: int | None = None,
               created_by: str = "") -> invitations.IssuedInvitation:
        """Give the hub user ``orm_user`` ``role`` and a fresh invitation; earlier unused ones
        stop working. ``role`` defaults to the role they have, else the default role; names in
        ``admin_users`` are always invited as admins."""
        if orm_user.name in self.admin_users:
            # The configuration makes them an admin at every login anyway.
            role = "admin"
        role = role or self.role_of(orm_user) or self.default_role
        self.assign_role(orm_user, role)
        lifetime = timedelta(seconds=expires_in or self.invitation_lifetime)
        issued = invitations.create_invitation(self.db, orm_user.name, role, lifetime, created_by)
        self.log.info("%s invited %s as %s until %s", created_by, orm_user.name, role,
                      issued.invitation.expires_at)
        return issued

    def accept_invitation(self, invitation: Invitation, password: str) -> bool:
        """Use ``invitation`` to set its name's password; False when it was already used."""
        username = invitation.username
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        if not invitations.mark_used(self.db, invitation.id):
            self.db.rollback()
            return False
        info = UserInfo.find(self.db, username)
        if info is None:
            self.db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        else:
            info.password = hashed
            info.is_authorized = True
        self.db.execute(delete(PasswordExpiry).where(PasswordExpiry.username == username))
        self.db.commit()
        self.login_throttle().forget_name(username)
        self.log.info("%s set their password with an invitation", username)
        return True


class HimaliaOAuthenticator(RoleMixin, GenericOAuthenticator):
    """Generic OpenID Connect login for production; new users get the default platform role."""
