"""Failed-login throttling kept in the hub database, so locks survive hub restarts.

Three rules, all over a sliding window of ``ThrottlePolicy.window`` seconds:

* a (source address, name) pair with ``pair_failures`` failures is locked;
* a source with ``source_failures`` failures across all names is locked;
* a wrong password tried for ``spray_names`` distinct names is refused for everyone.

Names that have no account are counted like any other, so locks reveal nothing about which
accounts exist. Passwords are never stored: a failure keeps only a short keyed tag
(8 hex digits of HMAC-SHA256 under a random per-hub key), enough to spot the same password
tried against many names and far too short to recover the password from.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .account_models import AuthSecret, LoginFailure, LoginLock, utcnow

TAG_KEY = "login-password-tag-key"
TAG_LENGTH = 8
#: Longer names (anything can be typed into the login form) are cut to this for counting.
MAX_NAME = 255

_MESSAGES = {
    "pair": "Too many failed logins for this name from your address",
    "source": "Too many failed logins from your address",
    "password": "Too many failed logins with this password",
}


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures within ``window`` seconds lock what, for ``lock_seconds``."""

    pair_failures: int = 5
    source_failures: int = 30
    spray_names: int = 5
    window: int = 900
    lock_seconds: int = 300


@dataclass(frozen=True)
class Lock:
    """An active lock: what it covers and when it ends."""

    kind: str
    until: datetime

    def message(self, now: datetime) -> str:
        minutes = max(1, math.ceil((self.until - now).total_seconds() / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"{_MESSAGES[self.kind]}; try again in {minutes} {unit}."


def pair_subject(source: str, username: str) -> str:
    return f"{source[:64]} {username[:MAX_NAME]}"


class LoginThrottle:
    """The throttle over one database session; ``clock`` returns naive UTC (tests inject it)."""

    def __init__(self, db: Session, policy: ThrottlePolicy | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.db = db
        self.policy = policy or ThrottlePolicy()
        self.clock = clock
        self._key: str | None = None

    # -- reading ---------------------------------------------------------------------------
    def password_tag(self, password: str) -> str:
        """Short keyed tag of ``password`` (the key is created on first use)."""
        digest = hmac.new(self._tag_key().encode(), password.encode("utf-8", "replace"),
                          hashlib.sha256)
        return digest.hexdigest()[:TAG_LENGTH]

    def active_lock(self, source: str, username: str, password: str) -> Lock | None:
        """The lock that refuses this attempt (the one ending last), or None."""
        now = self.clock()
        subjects = [("pair", pair_subject(source, username)), ("source", source),
                    ("password", self.password_tag(password))]
        covers = or_(*(and_(LoginLock.kind == kind, LoginLock.subject == subject)
                       for kind, subject in subjects))
        rows = self.db.scalars(select(LoginLock).where(LoginLock.until > now, covers))
        locks = [Lock(row.kind, row.until) for row in rows]
        return max(locks, key=lambda lock: lock.until, default=None)

    # -- writing ---------------------------------------------------------------------------
    def record_failure(self, source: str, username: str, password: str) -> Lock | None:
        """Count a failed login; return the lock it triggered, if any."""
        now = self.clock()
        since = now - timedelta(seconds=self.policy.window)
        tag = self.password_tag(password)
        source, username = source[:64], username[:MAX_NAME]
        self.db.execute(delete(LoginFailure).where(LoginFailure.at <= since))
        self.db.execute(delete(LoginLock).where(LoginLock.until <= now))
        self.db.add(LoginFailure(source=source, username=username, password_tag=tag, at=now))
        self.db.flush()
        recent = select(func.count()).select_from(LoginFailure).where(LoginFailure.at > since)
        pair = self.db.scalar(recent.where(LoginFailure.source == source,
                                           LoginFailure.username == username))
        by_source = self.db.scalar(recent.where(LoginFailure.source == source))
        names = self.db.scalar(
            select(func.count(func.distinct(LoginFailure.username)))
            .where(LoginFailure.at > since, LoginFailure.password_tag == tag)
        )
        triggered = []
        if pair >= self.policy.pair_failures:
            triggered.append(("pair", pair_subject(source, username)))
        if by_source >= self.policy.source_failures:
            triggered.append(("source", source))
        if names >= self.policy.spray_names:
            triggered.append(("password", tag))
        until = now + timedelta(seconds=self.policy.lock_seconds)
        for kind, subject in triggered:
            self._lock(kind, subject, until)
        self.db.commit()
        return Lock(triggered[0][0], until) if triggered else None

    def record_success(self, source: str, username: str) -> None:
        """A successful login clears the failures of its (source, name) pair."""
        source, username = source[:64], username[:MAX_NAME]
        self.db.execute(delete(LoginFailure).where(LoginFailure.source == source,
                                                   LoginFailure.username == username))
        self.db.commit()

    def forget_name(self, username: str) -> None:
        """Clear every failure and pair lock of ``username`` (its password was just reset)."""
        self.db.execute(delete(LoginFailure).where(LoginFailure.username == username))
        for lock in self.db.scalars(select(LoginLock).where(LoginLock.kind == "pair")).all():
            if lock.subject.split(" ", 1)[-1] == username:
                self.db.delete(lock)
        self.db.commit()

    def _lock(self, kind: str, subject: str, until: datetime) -> None:
        row = self.db.scalar(select(LoginLock).where(LoginLock.kind == kind,
                                                     LoginLock.subject == subject))
        if row is None:
            self.db.add(LoginLock(kind=kind, subject=subject, until=until))
        else:
            row.until = max(row.until, until)
        self.db.flush()

    def _tag_key(self) -> str:
        if self._key is None:
            self._key = self._load_tag_key()
        return self._key

    def _load_tag_key(self) -> str:
        key = self.db.get(AuthSecret, TAG_KEY)
        if key is not None:
            return key.value
        self.db.add(AuthSecret(name=TAG_KEY, value=secrets.token_hex(32)))
        try:
            self.db.commit()
        except IntegrityError:
            # Another hub process created it first; use theirs.
            self.db.rollback()
        return self.db.get(AuthSecret, TAG_KEY).value
