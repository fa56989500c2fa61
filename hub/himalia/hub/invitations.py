"""Single-use, expiring invitations: how a person gets the password of a name an admin chose.

An admin creates an invitation for a hub name; the link holds a random token, the database
holds only its sha256. Redeeming marks the invitation used with one conditional UPDATE, so
of two concurrent redemptions exactly one wins. Every function takes ``now`` (naive UTC) so
that tests control time.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .account_models import Invitation, utcnow

#: Longest lifetime an invitation may be given.
MAX_LIFETIME = timedelta(days=30)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation and its token (shown once, in the link; never stored)."""

    token: str
    invitation: Invitation


def create_invitation(db: Session, username: str, role: str, lifetime: timedelta,
                      created_by: str = "", now: datetime | None = None) -> IssuedInvitation:
    """Invite ``username``; earlier unused invitations for that name stop working."""
    now = now or utcnow()
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError("an invitation lasts more than 0 seconds and at most "
                         f"{MAX_LIFETIME.days} days")
    revoke_invitations(db, username, commit=False)
    token = secrets.token_urlsafe(32)
    invitation = Invitation(token_hash=hash_token(token), username=username, role=role,
                            created_by=created_by, created_at=now, expires_at=now + lifetime)
    db.add(invitation)
    db.commit()
    return IssuedInvitation(token, invitation)


def pending_invitations(db: Session, now: datetime | None = None) -> list[Invitation]:
    """Unused, unexpired invitations, oldest first."""
    now = now or utcnow()
    query = (select(Invitation).where(Invitation.used_at.is_(None), Invitation.expires_at > now)
             .order_by(Invitation.created_at, Invitation.id))
    return list(db.scalars(query))


def revoke_invitations(db: Session, username: str, commit: bool = True) -> int:
    """Delete the unused invitations of ``username``; return how many there were."""
    result = db.execute(delete(Invitation).where(Invitation.username == username,
                                                 Invitation.used_at.is_(None)))
    if commit:
        db.commit()
    return result.rowcount


def find_valid(db: Session, token: str, now: datetime | None = None) -> Invitation | None:
    """The unused, unexpired invitation of ``token``, or None (unknown, used and expired alike)."""
    now = now or utcnow()
    return db.scalar(select(Invitation).where(Invitation.token_hash == hash_token(token),
                                              Invitation.used_at.is_(None),
                                              Invitation.expires_at > now))


def mark_used(db: Session, invitation_id: int, now: datetime | None = None) -> bool:
    """Use the invitation, atomically: True for exactly one caller while it is still valid.

    The caller commits (together with whatever the invitation grants) or rolls back.
    """
    now = now or utcnow()
    result = db.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.used_at.is_(None),
               Invitation.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
