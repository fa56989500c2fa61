"""Invitations: single use, expiry, revocation, and tokens that never reach the database."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from himalia.hub import invitations
from himalia.hub.account_models import Invitation, create_tables

NOW = datetime(2030, 1, 1, 12, 0, 0)
WEEK = timedelta(days=7)


@pytest.fixture
def db():
    engine = create_engine("sqlite://")
    create_tables(engine)
    with Session(engine) as session:
        yield session


def invite(db, name="ada", lifetime=WEEK, now=NOW):
    return invitations.create_invitation(db, name, "scientist", lifetime, "admin", now=now)


def test_only_the_hash_of_the_token_is_stored(db):
    issued = invite(db)
    assert len(issued.token) >= 40
    row = db.scalar(select(Invitation))
    stored = [str(getattr(row, column.name)) for column in Invitation.__table__.columns]
    assert not any(issued.token in value for value in stored)
    assert row.token_hash == invitations.hash_token(issued.token)
    assert invitations.find_valid(db, issued.token, now=NOW).username == "ada"


def test_an_invitation_works_once(db):
    issued = invite(db)
    invitation = invitations.find_valid(db, issued.token, now=NOW)
    assert invitations.mark_used(db, invitation.id, now=NOW)
    db.commit()
    assert not invitations.mark_used(db, invitation.id, now=NOW)
    assert invitations.find_valid(db, issued.token, now=NOW) is None


def test_an_invitation_expires(db):
    issued = invite(db, lifetime=timedelta(seconds=60))
    invitation_id = invitations.find_valid(db, issued.token, now=NOW).id
    later = NOW + timedelta(seconds=60)
    assert invitations.find_valid(db, issued.token, now=later) is None
    assert not invitations.mark_used(db, invitation_id, now=later)
    assert invitations.pending_invitations(db, now=later) == []


def test_unknown_tokens_are_invalid(db):
    invite(db)
    assert invitations.find_valid(db, "not-a-token", now=NOW) is None


def test_a_new_invitation_revokes_the_earlier_unused_one(db):
    first = invite(db)
    second = invite(db, now=NOW + timedelta(minutes=1))
    assert invitations.find_valid(db, first.token, now=NOW) is None
    assert invitations.find_valid(db, second.token, now=NOW).username == "ada"
    assert [i.username for i in invitations.pending_invitations(db, now=NOW)] == ["ada"]


def test_revoking_ends_every_unused_invitation_of_the_name(db):
    issued = invite(db)
    other = invite(db, name="grace")
    assert invitations.revoke_invitations(db, "ada") == 1
    assert invitations.find_valid(db, issued.token, now=NOW) is None
    assert invitations.find_valid(db, other.token, now=NOW) is not None
    assert invitations.revoke_invitations(db, "ada") == 0


def test_lifetimes_are_bounded(db):
    for lifetime in (timedelta(0), timedelta(days=31)):
        with pytest.raises(ValueError, match="30 days"):
            invite(db, lifetime=lifetime)


def test_of_two_concurrent_redemptions_exactly_one_wins(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.sqlite'}", connect_args={"timeout": 30})
    create_tables(engine)
    with Session(engine) as db:
        issued = invite(db)
    barrier = threading.Barrier(2)
    results = []

    def redeem():
        with Session(engine) as db:
            invitation = invitations.find_valid(db, issued.token, now=NOW)
            barrier.wait()
            won = invitation is not None and invitations.mark_used(db, invitation.id, now=NOW)
            db.commit()
            results.append(won)

    threads = [threading.Thread(target=redeem) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [False, True]
