"""Tables the hub's authenticator keeps in the hub database, next to NativeAuthenticator's.

They have their own declarative base so that creating them (:func:`create_tables`) never
touches JupyterHub's tables. Times are naive UTC, as in JupyterHub's own tables.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import declarative_base

Base = declarative_base()


def utcnow() -> datetime:
    """Now, as the naive UTC time the tables store."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Invitation(Base):
    """A single-use link that lets one person set the password of one hub name."""

    __tablename__ = "himalia_invitations"
    id = Column(Integer, primary_key=True, autoincrement=True)
    #: sha256 hex of the token; the token itself is only ever in the link.
    token_hash = Column(String(64), nullable=False, unique=True)
    username = Column(String(255), nullable=False, index=True)
    role = Column(String(32), nullable=False)
    created_by = Column(String(255), nullable=False, default="")
    created_at = Column(DateTime, nullable=False)
    expires_at = Column(DateTime, nullable=False)
    used_at = Column(DateTime, nullable=True)


class PasswordExpiry(Base):
    """A password that stops working at ``expires_at`` (the bootstrap admin's one-time one)."""

    __tablename__ = "himalia_password_expiry"
    username = Column(String(255), primary_key=True)
    expires_at = Column(DateTime, nullable=False)


class LoginFailure(Base):
    """One failed login: where from, for which name, and a short keyed tag of the password."""

    __tablename__ = "himalia_login_failures"
    id = Column(Integer, primary_key=True, autoincrement=True)
    source = Column(String(64), nullable=False)
    username = Column(String(255), nullable=False)
    password_tag = Column(String(16), nullable=False)
    at = Column(DateTime, nullable=False, index=True)
    __table_args__ = (
        Index("ix_himalia_login_failures_pair", "source", "username"),
        Index("ix_himalia_login_failures_tag", "password_tag"),
    )


class LoginLock(Base):
    """Logins refused until ``until``: for a (source, name) pair, a source, or a password tag."""

    __tablename__ = "himalia_login_locks"
    id = Column(Integer, primary_key=True, autoincrement=True)
    #: "pair", "source" or "password"
    kind = Column(String(16), nullable=False)
    #: "<source> <name>", "<source>" or "<password tag>"
    subject = Column(String(400), nullable=False)
    until = Column(DateTime, nullable=False)
    __table_args__ = (UniqueConstraint("kind", "subject", name="uq_himalia_login_locks"),)


class AuthSecret(Base):
    """Random per-hub secrets (the key of the password tags)."""

    __tablename__ = "himalia_auth_secrets"
    name = Column(String(64), primary_key=True)
    value = Column(String(128), nullable=False)


def create_tables(bind) -> None:
    """Create the tables that do not exist yet (safe on every hub start)."""
    Base.metadata.create_all(bind, checkfirst=True)
