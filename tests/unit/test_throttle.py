"""Failed-login throttling: what locks, for how long, and what a lock leaves alone."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from himalia.hub.account_models import LoginFailure, LoginLock, create_tables
from himalia.hub.throttle import LoginThrottle, ThrottlePolicy

POLICY = ThrottlePolicy(pair_failures=5, source_failures=30, spray_names=5, window=900,
                        lock_seconds=300)


class Clock:
    def __init__(self):
        self.now = datetime(2030, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def engine():
    engine = create_engine("sqlite://")
    create_tables(engine)
    return engine


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def throttle(engine, clock):
    with Session(engine) as db:
        yield LoginThrottle(db, POLICY, clock)


def fail(throttle, times, source="10.0.0.1", name="ada", password="wrong-guess"):
    return [throttle.record_failure(source, name, password) for _ in range(times)]


def test_a_pair_locks_after_the_fifth_failure_and_refuses_even_the_right_password(throttle):
    assert fail(throttle, 4) == [None] * 4
    assert throttle.active_lock("10.0.0.1", "ada", "the-right-password") is None
    lock = fail(throttle, 1)[0]
    assert lock is not None and lock.kind == "pair"
    refused = throttle.active_lock("10.0.0.1", "ada", "the-right-password")
    assert refused.kind == "pair"
    assert refused.message(throttle.clock()) == (
        "Too many failed logins for this name from your address; try again in 5 minutes.")


def test_a_pair_lock_leaves_other_sources_and_other_names_alone(throttle):
    fail(throttle, 5)
    assert throttle.active_lock("10.0.0.2", "ada", "pw") is None
    assert throttle.active_lock("10.0.0.1", "grace", "pw") is None


def test_a_lock_ends_after_lock_seconds(throttle, clock):
    fail(throttle, 5)
    clock.advance(299)
    lock = throttle.active_lock("10.0.0.1", "ada", "pw")
    assert lock.message(clock()) == (
        "Too many failed logins for this name from your address; try again in 1 minute.")
    clock.advance(1)
    assert throttle.active_lock("10.0.0.1", "ada", "pw") is None


def test_failures_older_than_the_window_do_not_count(throttle, clock):
    fail(throttle, 4)
    clock.advance(901)
    assert fail(throttle, 4) == [None] * 4
    assert throttle.active_lock("10.0.0.1", "ada", "pw") is None


def test_a_success_clears_the_pair_counter(throttle):
    fail(throttle, 4)
    throttle.record_success("10.0.0.1", "ada")
    assert fail(throttle, 4) == [None] * 4


def test_a_source_locks_after_source_failures_across_names(throttle):
    for i in range(29):
        assert throttle.record_failure("10.0.0.1", f"user{i}", f"guess{i}") is None
    lock = throttle.record_failure("10.0.0.1", "user29", "guess29")
    assert lock.kind == "source"
    refused = throttle.active_lock("10.0.0.1", "somebody-else", "pw")
    assert refused.kind == "source"
    assert refused.message(throttle.clock()).startswith("Too many failed logins from your address;")
    assert throttle.active_lock("10.0.0.2", "somebody-else", "pw") is None


def test_a_password_sprayed_over_distinct_names_is_refused_for_everyone(throttle):
    for i, source in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]):
        assert throttle.record_failure(source, f"victim{i}", "Summer2030!") is None
    # The same name again is not a new name.
    assert throttle.record_failure("10.0.0.9", "victim0", "Summer2030!") is None
    lock = throttle.record_failure("10.0.0.5", "victim4", "Summer2030!")
    assert lock.kind == "password"
    refused = throttle.active_lock("10.9.9.9", "anyone", "Summer2030!")
    assert refused.kind == "password"
    assert throttle.active_lock("10.9.9.9", "anyone", "a-different-password") is None


def test_names_without_an_account_lock_exactly_like_real_ones(throttle):
    # The throttle never looks at accounts: a lock cannot tell whether a name exists.
    fail(throttle, 5, name="no-such-person")
    assert throttle.active_lock("10.0.0.1", "no-such-person", "pw").kind == "pair"


def test_locks_live_in_the_database_and_survive_a_new_throttle(engine, clock):
    with Session(engine) as db:
        fail(LoginThrottle(db, POLICY, clock), 5)
    with Session(engine) as db:
        # A hub restart: a new session and a new throttle read the same tables.
        assert LoginThrottle(db, POLICY, clock).active_lock("10.0.0.1", "ada", "pw").kind == "pair"
        rows = db.scalars(select(LoginLock)).all()
        assert [(row.kind, row.subject) for row in rows] == [("pair", "10.0.0.1 ada")]


def test_failures_keep_only_a_short_keyed_tag_of_the_password(engine, clock):
    with Session(engine) as db:
        throttle = LoginThrottle(db, POLICY, clock)
        fail(throttle, 1, password="my-secret-password")
        tag = db.scalar(select(LoginFailure.password_tag))
    assert len(tag) == 8 and int(tag, 16) >= 0
    assert "my-secret" not in tag
    other = create_engine("sqlite://")
    create_tables(other)
    with Session(other) as db:
        # Another hub has another key, so tags cannot be looked up across installations.
        assert LoginThrottle(db, POLICY, clock).password_tag("my-secret-password") != tag


def test_resetting_a_password_forgets_the_names_failures_and_locks(throttle):
    fail(throttle, 5, source="10.0.0.1")
    fail(throttle, 5, source="10.0.0.2")
    throttle.forget_name("ada")
    assert throttle.active_lock("10.0.0.1", "ada", "pw") is None
    assert throttle.active_lock("10.0.0.2", "ada", "pw") is None


def request_from(peer: str, **headers):
    from types import SimpleNamespace

    from tornado.httputil import HTTPHeaders

    http_headers = HTTPHeaders({k.replace("_", "-"): v for k, v in headers.items()})
    # Tornado's xheaders support has already replaced remote_ip (X-Real-Ip wins there).
    remote_ip = http_headers.get("X-Real-Ip") or peer
    context = SimpleNamespace(_orig_remote_ip=peer, remote_ip=remote_ip)
    return SimpleNamespace(request=SimpleNamespace(headers=http_headers, remote_ip=remote_ip,
                                                   connection=SimpleNamespace(context=context)))


def test_the_source_is_the_last_forwarded_hop_and_never_x_real_ip():
    from himalia.hub.auth import client_address

    # The public proxy appends the address that connected to it; a client's own
    # X-Forwarded-For entries come before it and X-Real-Ip is the client's to choose.
    handler = request_from("127.0.0.1", X_Forwarded_For="6.6.6.6, 203.0.113.7", X_Real_Ip="6.6.6.6")
    assert client_address(handler) == "203.0.113.7"
    assert client_address(handler, trusted_proxies=["203.0.113.7"]) == "6.6.6.6"
    assert client_address(request_from("198.51.100.2", X_Real_Ip="6.6.6.6")) == "198.51.100.2"
