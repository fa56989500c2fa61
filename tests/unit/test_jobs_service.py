"""The rules of jobs over a real database (SQLite in a temp folder, and PostgreSQL when it
runs here), with a controllable clock: the scheduler is given the time it runs at."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import nbformat
import pytest
from sqlalchemy.exc import IntegrityError

from himalia.hub.jobs import service
from himalia.hub.jobs.models import FAILED, QUEUED, RUNNING, JobRun
from himalia.hub.jobs.service import BlobStore, JobError, Limits, Snapshot
from himalia.hub.unixusers import same_owner

UTC = timezone.utc


def notebook(params: str = "n = 3\nrate = 0.5\nlabel = 'x'\nflag = True\nitems = [1]") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("y = n")]
    return nb


@pytest.fixture
def db(api_db):
    return api_db


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs")


def make(db, blobs, **spec):
    with db.session() as s:
        job = service.create_job(s, blobs, "alice", {"name": "j", **spec}, Snapshot(notebook(), {}), Limits())
        return job.id


def test_parameter_types_come_from_the_parameters_cell():
    declared = service.notebook_parameters(notebook("n = 3\nrate: float = 1\nlabel = 'x'\nnote = f(2)"))
    assert {k: v["type"] for k, v in declared.items()} == {"n": "int", "rate": "float", "label": "str",
                                                           "note": "None"}
    assert declared["rate"]["default"] == 1 and declared["note"]["default"] == "f(2)"
    assert service.check_parameters(declared, {"n": 4, "rate": 2, "note": [1]}) == {"n": 4, "rate": 2, "note": [1]}
    for bad, field in (({"n": 1.5}, "parameters.n"), ({"n": True}, "parameters.n"),
                       ({"label": 3}, "parameters.label"), ({"m": 1}, "parameters.m")):
        with pytest.raises(JobError) as info:
            service.check_parameters(declared, bad)
        assert info.value.field == field


def test_a_job_is_stored_whole_or_not_at_all(db, blobs):
    with pytest.raises(JobError):
        make(db, blobs, schedule="61 * * * *")
    with pytest.raises(JobError):
        make(db, blobs, parameters={"n": "x"})
    with db.session() as s:
        assert service.visible_jobs(s, "alice", False) == []
    assert not (blobs.root.exists() and any(blobs.root.rglob("*")))


def test_an_update_makes_a_new_version_and_old_runs_keep_theirs(db, blobs):
    job_id = make(db, blobs, parameters={"n": 5})
    with db.session() as s:
        job = s.get(service.Job, job_id)
        first = service.submit_run(s, job, {})
        service.update_job(s, blobs, job, {"parameters": {"n": 9}}, None, Limits())
        assert job.version == 2
        assert service.run_parameters(service.job_version(s, job, first.version), first.parameters)["n"] == 5
        assert service.run_parameters(service.job_version(s, job), {})["n"] == 9
        old, new = service.job_version(s, job, 1), service.job_version(s, job, 2)
        assert old.notebook == new.notebook  # the same content, stored once


def test_the_scheduler_queues_each_slot_once_in_its_time_zone(db, blobs):
    job_id = make(db, blobs, schedule="0 2 * * *", timezone="Europe/Paris")
    start = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    with db.session() as s:
        s.get(service.Job, job_id).last_slot = start
    # 02:00 in Paris is 01:00 UTC before the clocks change and 00:00 UTC after; on 29 March
    # 02:00 does not exist (02:00 -> 03:00): that day's run is at 03:00 CEST, 01:00 UTC.
    for day, utc_hour in ((28, 1), (29, 1), (30, 0)):
        now = datetime(2026, 3, day, 3, 0, tzinfo=UTC)
        with db.session() as s:
            queued = service.schedule_due(s, now, misfire_grace_seconds=3600 * 6)
            assert [service.aware(r.slot) for r in queued] == [datetime(2026, 3, day, utc_hour, 0, tzinfo=UTC)]
        with db.session() as s:  # the same moment again: nothing new
            assert service.schedule_due(s, now, misfire_grace_seconds=3600 * 6) == []


def test_missed_slots_are_coalesced_and_old_ones_skipped(db, blobs):
    job_id = make(db, blobs, schedule="*/10 * * * *")
    down = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    with db.session() as s:
        s.get(service.Job, job_id).last_slot = down
    with db.session() as s:  # 2 h later: one run, for the latest slot
        queued = service.schedule_due(s, down + timedelta(hours=2, minutes=5), misfire_grace_seconds=600)
        assert [service.aware(r.slot) for r in queued] == [down + timedelta(hours=2)]
    with db.session() as s:  # a slot older than the grace is skipped, not run late
        queued = service.schedule_due(s, down + timedelta(hours=5, minutes=1), misfire_grace_seconds=30)
        assert queued == []


def test_the_database_refuses_a_second_run_of_a_slot(db, blobs):
    job_id = make(db, blobs)
    slot = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    with db.session() as s:
        service.submit_run(s, s.get(service.Job, job_id), {}, trigger="schedule", slot=slot)
    with pytest.raises(IntegrityError):
        with db.session() as s:
            service.submit_run(s, s.get(service.Job, job_id), {}, trigger="schedule", slot=slot)


def test_claims_are_exclusive_and_retries_back_off(db, blobs):
    job_id = make(db, blobs, max_retries=2, retry_backoff_seconds=10)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as s:
        run = service.submit_run(s, s.get(service.Job, job_id), {"n": 4})
    with db.session() as s:
        assert service.claim(s, run.id, 100) is True
    with db.session() as s:
        assert service.claim(s, run.id, 200) is False
        run = s.get(JobRun, run.id)
        assert run.state == RUNNING and run.runner_pid == 100
        service.finish(s, run, FAILED, "boom")
        first = service.retry_of(s, s.get(service.Job, job_id), run, now)
        assert first.attempt == 2 and first.parameters == {"n": 4} and first.state == QUEUED
        assert service.aware(first.not_before) == now + timedelta(seconds=10)
        assert service.runnable(s, now, 5) == []  # not before its time
        assert [r.id for r in service.runnable(s, now + timedelta(seconds=10), 5)] == [first.id]
        first.state = FAILED
        second = service.retry_of(s, s.get(service.Job, job_id), first, now)
        assert second.attempt == 3 and service.aware(second.not_before) == now + timedelta(seconds=20)
        second.state = FAILED
        assert service.retry_of(s, s.get(service.Job, job_id), second, now) is None  # max_retries


def test_runs_left_running_by_a_dead_runner_are_found(db, blobs):
    job_id = make(db, blobs)
    with db.session() as s:
        run = service.submit_run(s, s.get(service.Job, job_id), {})
        service.claim(s, run.id, 111)
    with db.session() as s:
        assert [r.id for r in service.orphaned_runs(s, alive_pid=222)] == [run.id]
        assert service.orphaned_runs(s, alive_pid=111) == []


def test_notebooks_are_checked_before_anything_is_stored():
    with pytest.raises(JobError) as info:
        service.read_notebook({"cells": 1}, max_bytes=10_000)
    assert info.value.field == "notebook"
    big = json.loads(nbformat.writes(notebook("x = '" + "a" * 20_000 + "'")))
    with pytest.raises(JobError) as info:
        service.read_notebook(big, max_bytes=10_000)
    assert info.value.status == 413


def test_a_service_knows_a_hub_user_by_creation_time_alone():
    assert same_owner("hub-user:4:2026-01-01T00:00:00", "hub-user:?:2026-01-01T00:00:00")
    assert not same_owner("hub-user:4:2026-01-01T00:00:00", "hub-user:?:2026-02-01T00:00:00")
    assert not same_owner("hub-user:4:2026-01-01T00:00:00", "hub-user:5:2026-01-01T00:00:00")
    assert not same_owner("service", "hub-user:?:x")


def test_outputs_past_keep_runs_expire_newest_kept(db, blobs):
    job_id = make(db, blobs, keep_runs=2)
    with db.session() as s:
        job = s.get(service.Job, job_id)
        runs = [service.submit_run(s, job, {}) for _ in range(5)]
        s.flush()
        for run in runs[:4]:
            service.finish(s, run, FAILED, "done")
        runs[3].outputs_removed = True  # the newest ended run's files were removed by hand
    with db.session() as s:
        expired = service.expired_outputs(s, s.get(service.Job, job_id))
        # The newest two ended runs count as kept even so; the queued one has not ended.
        assert [r.id for r in expired] == [runs[1].id, runs[0].id]
