"""Login for a small team on one machine: hub-kept accounts with admin approval.

:class:`HimaliaAuthenticator` is NativeAuthenticator plus three things the platform needs:
the first administrator is bootstrapped from a one-time password file, a person the admin
created in the hub may sign up (choose a password) without waiting for approval, and every
user the hub adds lands in the group of the configured default role.
"""

from __future__ import annotations

from pathlib import Path

import bcrypt
from jupyterhub import orm
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import maybe_future
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from oauthenticator.generic import GenericOAuthenticator
from sqlalchemy.orm import object_session
from traitlets import Bool, Unicode
from traitlets.config import LoggingConfigurable

from .config import ROLE_GROUPS


class RoleGroupMixin(LoggingConfigurable):
    """Puts every user the hub adds into the group of the default platform role."""

    default_group = Unicode(
        ROLE_GROUPS["scientist"],
        help="Hub group a newly added user joins when they are in no role group yet.",
    ).tag(config=True)

    role_groups = Unicode(
        ",".join(ROLE_GROUPS.values()),
        help="Comma-separated hub groups that carry platform roles.",
    ).tag(config=True)

    async def add_user(self, user):
        await maybe_future(super().add_user(user))
        role_groups = set(self.role_groups.split(","))
        if any(group.name in role_groups for group in user.groups):
            return
        # init_users passes the ORM object, the REST API and login pass its wrapper.
        orm_user = getattr(user, "orm_user", user)
        db = object_session(orm_user)
        name = ROLE_GROUPS["admin"] if orm_user.admin else self.default_group
        group = orm.Group.find(db, name)
        if group is None:
            self.log.warning("Group %s does not exist; %s has no platform role", name, user.name)
            return
        orm_user.groups.append(group)
        db.commit()
        self.log.info("Added %s to group %s", user.name, group.name)


class ApprovalAwareLoginHandler(LoginHandler):
    """The hub's own login page, telling people whose account still waits for approval."""

    def _render(self, login_error=None, username=None, **kwargs):
        if login_error and username:
            info = self.authenticator.get_user(username)
            if info is not None and not info.is_authorized:
                login_error = "Your account has not been approved by an administrator yet."
        return super()._render(login_error=login_error, username=username, **kwargs)


class HimaliaAuthenticator(RoleGroupMixin, NativeAuthenticator):
    """NativeAuthenticator with bootstrap, pre-approval of admin-created users and role groups."""

    bootstrap_password_file = Unicode(
        "",
        help="""File holding the first administrator's password, written once by ``himalia up``.

        When the file exists and an admin has no account yet, the account is created with
        this password and the file is deleted.
        """,
    ).tag(config=True)

    approve_precreated_users = Bool(
        True,
        help="""Treat users an admin created in the hub (admin page or REST API) as approved.

        They sign up at ``/hub/signup`` to choose their password and can log in at once.
        Turn off to require approval at ``/hub/authorize`` for everyone.
        """,
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
                self.log.info("Bootstrapped the administrator account %s", name)
        self.db.commit()
        path.unlink()

    def get_handlers(self, app):
        # NativeAuthenticator's login handler predates JupyterHub 6 (it uses the removed
        # statsd client); the hub's handler works with NativeAuthenticator.authenticate.
        handlers = [(path, handler) for path, handler in super().get_handlers(app) if path != r"/login"]
        return [(r"/login", ApprovalAwareLoginHandler), *handlers]

    def get_authed_users(self):
        authed = super().get_authed_users()
        if self.approve_precreated_users:
            authed = authed.union(name for (name,) in self.db.query(orm.User.name))
        return authed



class HimaliaOAuthenticator(RoleGroupMixin, GenericOAuthenticator):
    """Generic OpenID Connect login for production; new users join the default role's group."""
