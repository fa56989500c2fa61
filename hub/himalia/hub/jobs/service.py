"""The rules of jobs: plain functions over a Session and the caller's name; no HTTP.

A job's notebook and input files are stored by content (:class:`BlobStore`); each change to
what a job runs makes a new immutable :class:`JobVersion`, and runs keep the version they ran.
Runs move ``queued -> running -> succeeded | failed | timed_out | cancelled``; the database
allows one run per (job, scheduled slot), so no slot ever runs twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nbformat
from croniter import croniter
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import PlatformError
from .models import (CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, TIMED_OUT, Job,
                     JobRun, JobVersion, RunValue)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
VALUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
#: JSON types a parameter of each inferred type accepts (papermill's type names).
ACCEPTS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}
NOTIFY_EVENTS = ("failure", "success")


class JobError(PlatformError):
    """A request that cannot be carried out; ``status`` is its HTTP status, ``field`` the
    part of the request at fault."""

    def __init__(self, message: str, status: int = 422, field: str = ""):
        super().__init__(f"{field}: {message}" if field else message, status)
        self.field = field


class NotFound(JobError):
    def __init__(self, what: str):
        super().__init__(f"{what} does not exist (or is not yours).", status=404)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(when: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; they were stored in UTC."""
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when


# -- content-addressed files -----------------------------------------------------------------
class BlobStore:
    """Immutable files named by their sha256 under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


# -- validation ------------------------------------------------------------------------------
#: Names the API's routes use next to job names (``/jobs/inspect``...).
RESERVED_NAMES = frozenset({"inspect", "schedule-preview"})


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name) or name.isdigit():
        raise JobError("use 1-100 letters, digits, '.', '_' or '-', starting with a letter or "
                       f"digit, not only digits (got {str(name)[:40]!r})", field=field)
    if name in RESERVED_NAMES:
        raise JobError(f"{name!r} is reserved; choose another name", field=field)
    return name


def read_notebook(data: Any, *, max_bytes: int) -> nbformat.NotebookNode:
    """A valid nbformat v4 notebook from its JSON (dict or text), or a 422 naming the problem."""
    raw = data if isinstance(data, (str, bytes)) else json.dumps(data)
    if len(raw) > max_bytes:
        raise JobError(f"the notebook is {len(raw) // 1024} KiB; the limit is {max_bytes // 1024} "
                       "KiB (clear large outputs before scheduling it)", status=413, field="notebook")
    try:
        nb = nbformat.reads(raw if isinstance(raw, str) else raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds for malformed input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JobError(f"not a valid nbformat v4 notebook ({first[:200]})", field="notebook") from None
    if nb.nbformat != 4:
        raise JobError(f"nbformat {nb.nbformat} is not supported; save it as nbformat 4", field="notebook")
    return nb


def notebook_parameters(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """``{name: {"type", "default", "help"}}`` of the ``parameters`` cell, by papermill's own
    inspection (types from annotations such as ``n: int = 3``, else from the literal
    assigned); defaults that are Python literals become values, others stay source text."""
    import copy

    from papermill.inspection import _infer_parameters

    nb = copy.deepcopy(nb)
    for cell in nb.cells:  # as papermill's own loader leaves them
        cell.metadata.setdefault("tags", [])
    # Jobs run on the himalia (Python) kernel, whatever kernel the notebook was saved with.
    kernelspec = nb.metadata.get("kernelspec") or {}
    try:
        inferred = _infer_parameters(nb, name=kernelspec.get("name") or "himalia",
                                     language=kernelspec.get("language") or "python")
    except Exception as e:  # noqa: BLE001 - papermill's parsers raise many kinds
        raise JobError(f"the cell tagged 'parameters' cannot be read ({e})", field="notebook") from None
    found = {}
    for p in inferred:
        default: Any = p.default
        literal = True
        try:
            import ast

            default = ast.literal_eval(p.default)
        except (ValueError, SyntaxError):
            literal = False
        kind = p.inferred_type_name
        if literal and kind in ("None", "", None) and type(default).__name__ in ACCEPTS:
            # No annotation: the type of the literal the cell assigns.
            kind = type(default).__name__
        found[p.name] = {"type": kind, "default": default, "help": p.help}
    return found


def check_parameters(declared: dict[str, dict], given: Any, field: str = "parameters") -> dict:
    """``given`` checked against the notebook's parameters: known names, right types."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise JobError("must be an object of parameter names to values", field=field)
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none: the notebook has no cell tagged 'parameters'"
            raise JobError(f"unknown parameter {name!r}; the notebook's parameters are: {known}",
                           field=f"{field}.{name}")
        kind = declared[name]["type"]
        accepted = ACCEPTS.get(kind)
        if accepted is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in accepted
        if wrong_bool or not isinstance(value, accepted):
            raise JobError(f"must be a {kind} (the parameters cell sets "
                           f"{name} = {declared[name]['default']!r}), got {json.dumps(value)[:60]}",
                           field=f"{field}.{name}")
    try:
        json.dumps(given)
    except (TypeError, ValueError) as e:
        raise JobError(f"values must be JSON ({e})", field=field) from None
    return dict(given)


def check_timezone(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise JobError("give an IANA time zone such as 'Europe/Paris' or 'UTC'", field="timezone")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise JobError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' "
                       "or 'UTC'", field="timezone") from None
    return name


def check_schedule(expr: Any) -> str | None:
    """A cron expression (5 fields, or 6 with seconds last) or None for manual runs only."""
    if expr is None or expr == "":
        return None
    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise JobError(f"{str(expr)[:60]!r} is not a cron expression; use five fields "
                       "'minute hour day-of-month month day-of-week', e.g. '0 2 * * *' "
                       "(every day at 02:00)", field="schedule")
    return expr


def next_times(expr: str, tz: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` times ``expr`` fires after ``after``, in time zone ``tz``."""
    it = croniter(expr, after.astimezone(ZoneInfo(tz)))
    return [it.get_next(datetime) for _ in range(count)]


def check_int(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobError(f"must be a whole number from {low} to {high}", field=field)
    return value


def check_notify(value: Any) -> dict:
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise JobError("must be an object {\"webhook\": url, \"email\": [addresses], \"on\": "
                       "[\"failure\", \"success\"]}", field="notify")
    unknown = set(value) - {"webhook", "email", "on"}
    if unknown:
        raise JobError(f"unknown key(s) {sorted(unknown)}; use webhook, email and on", field="notify")
    webhook = value.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not re.match(r"^https?://", webhook)):
        raise JobError("must be an http(s) URL", field="notify.webhook")
    email = value.get("email") or []
    if isinstance(email, str):
        email = [email]
    if not isinstance(email, list) or not all(isinstance(a, str) and re.fullmatch(r"[^@\s]+@[^@\s]+", a)
                                              for a in email):
        raise JobError("must be a list of e-mail addresses", field="notify.email")
    on = value.get("on", ["failure"])
    if not isinstance(on, list) or not set(on) <= set(NOTIFY_EVENTS):
        raise JobError(f"must be a list of {', '.join(NOTIFY_EVENTS)}", field="notify.on")
    return {"webhook": webhook, "email": email, "on": on}


@dataclass
class Limits:
    """What the platform allows; from HimaliaConfig."""

    profiles: tuple[str, ...] = ()
    default_profile: str = ""
    max_notebook_bytes: int = 20 * 1024 * 1024
    max_timeout_seconds: int = 7 * 24 * 3600
    max_retries: int = 100


def check_profile(value: Any, limits: Limits) -> str:
    if value in (None, ""):
        return limits.default_profile
    if not limits.profiles:
        raise JobError("this platform has no profiles to choose from; leave 'profile' out",
                       field="profile")
    if value not in limits.profiles:
        raise JobError(f"unknown profile {value!r}; choose one of {', '.join(limits.profiles)}",
                       field="profile")
    if not isinstance(value, str):
        raise JobError("must be a profile name", field="profile")
    return value


# -- jobs ------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    """What a version runs, before it is stored: the notebook and the input files' bytes."""

    notebook: nbformat.NotebookNode
    inputs: dict[str, bytes]
    source_path: str = ""


def create_job(db: Session, blobs: BlobStore, owner: str, spec: dict, snapshot: Snapshot,
               limits: Limits) -> Job:
    """Validate everything first, then store the job and its version 1 (nothing half-stored)."""
    name = check_name(spec.get("name"))
    declared = notebook_parameters(snapshot.notebook)
    defaults = check_parameters(declared, spec.get("parameters"))
    fields = _job_fields(spec, limits, creating=True)
    if db.scalar(select(Job.id).where(Job.owner == owner, Job.name == name)) is not None:
        raise JobError(f"you already have a job named {name!r}: update it (PATCH) or choose "
                       "another name", status=409, field="name")
    job = Job(name=name, owner=owner, version=1, **fields)
    job.last_slot = utcnow() if job.schedule else None
    db.add(job)
    try:
        db.flush()
    except IntegrityError:
        raise JobError(f"you already have a job named {name!r}", status=409, field="name") from None
    _add_version(db, blobs, job, 1, snapshot, declared, defaults)
    return job


def _job_fields(spec: dict, limits: Limits, *, creating: bool) -> dict:
    fields: dict[str, Any] = {}
    if creating or "schedule" in spec:
        fields["schedule"] = check_schedule(spec.get("schedule"))
    if creating or "timezone" in spec:
        fields["timezone"] = check_timezone(spec.get("timezone", "UTC"))
    if creating or "profile" in spec:
        fields["profile"] = check_profile(spec.get("profile"), limits)
    numbers = {
        "timeout_seconds": (3600, 1, limits.max_timeout_seconds),
        "max_retries": (0, 0, limits.max_retries),
        "retry_backoff_seconds": (60, 0, 24 * 3600),
        "concurrency": (1, 1, 100),
        "keep_runs": (50, 1, 100_000),
    }
    for key, (default, low, high) in numbers.items():
        if creating or key in spec:
            value = spec.get(key, default)
            fields[key] = check_int(default if value is None else value, key, low=low, high=high)
    if creating or "notify" in spec:
        fields["notify"] = check_notify(spec.get("notify"))
    for flag in ("paused", "published"):
        if flag in spec:
            if not isinstance(spec[flag], bool):
                raise JobError("must be true or false", field=flag)
            fields[flag] = spec[flag]
    return fields


def _add_version(db: Session, blobs: BlobStore, job: Job, version: int, snapshot: Snapshot,
                 declared: dict, defaults: dict) -> JobVersion:
    for name, value in defaults.items():
        declared[name] = {**declared[name], "default": value}
    inputs = {path: blobs.put(data) for path, data in sorted(snapshot.inputs.items())}
    digest = blobs.put(nbformat.writes(snapshot.notebook).encode("utf-8"))
    row = JobVersion(job_id=job.id, version=version, notebook=digest, parameters=declared,
                     inputs=inputs, source_path=snapshot.source_path)
    db.add(row)
    db.flush()
    return row


def update_job(db: Session, blobs: BlobStore, job: Job, spec: dict, snapshot: Snapshot | None,
               limits: Limits) -> Job:
    """Change settings; a new notebook, inputs or parameter defaults make a new version."""
    current = job_version(db, job)
    fields = _job_fields(spec, limits, creating=False)
    new_version = snapshot is not None or "parameters" in spec
    if new_version:
        nb = snapshot.notebook if snapshot else nbformat.reads(
            blobs.get(current.notebook).decode("utf-8"), as_version=4)
        declared = notebook_parameters(nb)
        old_defaults = {k: v["default"] for k, v in current.parameters.items() if k in declared}
        defaults = check_parameters(declared, {**(old_defaults if snapshot is None else {}),
                                               **(spec.get("parameters") or {})})
        if snapshot is None:
            snapshot = Snapshot(nb, {p: blobs.get(d) for p, d in current.inputs.items()},
                                current.source_path)
    if "schedule" in fields and fields["schedule"] != job.schedule:
        job.last_slot = utcnow()
    for key, value in fields.items():
        setattr(job, key, value)
    if new_version:
        job.version += 1
        _add_version(db, blobs, job, job.version, snapshot, declared, defaults)
    job.updated_at = utcnow()
    db.flush()
    return job


def job_version(db: Session, job: Job, version: int | None = None) -> JobVersion:
    row = db.scalar(select(JobVersion).where(JobVersion.job_id == job.id,
                                             JobVersion.version == (version or job.version)))
    if row is None:
        raise NotFound(f"Version {version} of job {job.id}")
    return row


def visible_jobs(db: Session, who: str, admin: bool, *, offset: int = 0, limit: int = 100) -> list[Job]:
    query = select(Job).order_by(Job.id)
    if not admin:
        query = query.where(Job.owner == who)
    return list(db.scalars(query.offset(offset).limit(limit)))


def delete_job(db: Session, job: Job) -> list[int]:
    """Remove a job, its versions, runs and values; the ids of its runs (whose files go too)."""
    runs = list(db.scalars(select(JobRun.id).where(JobRun.job_id == job.id)))
    if runs:
        db.execute(delete(RunValue).where(RunValue.run_id.in_(runs)))
    db.execute(delete(JobRun).where(JobRun.job_id == job.id))
    db.execute(delete(JobVersion).where(JobVersion.job_id == job.id))
    db.delete(job)
    db.flush()
    return runs


# -- runs ------------------------------------------------------------------------------------
def run_parameters(version: JobVersion, overrides: dict) -> dict:
    """The values a run gets: the version's defaults with the run's overrides."""
    values = {k: v["default"] for k, v in version.parameters.items()}
    values.update(overrides)
    return values


def submit_run(db: Session, job: Job, parameters: Any, *, trigger: str = "manual",
               version: int | None = None, slot: datetime | None = None,
               attempt: int = 1, retry_of: int | None = None,
               not_before: datetime | None = None) -> JobRun:
    row = job_version(db, job, version)
    overrides = check_parameters(row.parameters, parameters)
    run = JobRun(job_id=job.id, owner=job.owner, version=row.version, slot=slot, trigger=trigger,
                 attempt=attempt, retry_of=retry_of, parameters=overrides, state=QUEUED,
                 not_before=not_before, created_at=utcnow())
    db.add(run)
    db.flush()
    return run


def rerun(db: Session, job: Job, run: JobRun) -> JobRun:
    """The same version, parameters and inputs again."""
    return submit_run(db, job, run.parameters, trigger="rerun", version=run.version)


def cancel_run(db: Session, run: JobRun) -> JobRun:
    if run.state == QUEUED:
        finish(db, run, CANCELLED, "cancelled before it started")
    elif run.state == RUNNING:
        run.cancel_requested = True
    else:
        raise JobError(f"run {run.id} has already ended ({run.state})", status=409)
    db.flush()
    return run


def finish(db: Session, run: JobRun, state: str, reason: str = "", error: dict | None = None) -> None:
    assert state in TERMINAL
    run.state = state
    run.reason = reason
    if error:
        run.error = error
    run.finished_at = utcnow()
    started = aware(run.started_at)
    run.duration_seconds = (run.finished_at - started).total_seconds() if started else None
    db.flush()


def claim(db: Session, run_id: int, pid: int) -> bool:
    """Atomically move a queued run to running for runner ``pid``; False if someone else did."""
    done = db.execute(update(JobRun).where(JobRun.id == run_id, JobRun.state == QUEUED)
                      .values(state=RUNNING, runner_pid=pid, started_at=utcnow()))
    return done.rowcount == 1


def runnable(db: Session, now: datetime, limit: int) -> list[JobRun]:
    """Queued runs whose time has come, oldest first, within each job's concurrency."""
    running = dict(db.execute(select(JobRun.job_id, func.count()).where(JobRun.state == RUNNING)
                              .group_by(JobRun.job_id)).all())
    picked: list[JobRun] = []
    query = (select(JobRun, Job.concurrency, Job.paused).join(Job, Job.id == JobRun.job_id)
             .where(JobRun.state == QUEUED).order_by(JobRun.id))
    for run, concurrency, paused in db.execute(query):
        if len(picked) >= limit:
            break
        if aware(run.not_before) and aware(run.not_before) > now:
            continue
        if paused and run.trigger == "schedule":
            continue
        if running.get(run.job_id, 0) >= concurrency:
            continue
        running[run.job_id] = running.get(run.job_id, 0) + 1
        picked.append(run)
    return picked


def next_queued_time(db: Session) -> datetime | None:
    return aware(db.scalar(select(func.min(JobRun.not_before)).where(JobRun.state == QUEUED)))


def schedule_due(db: Session, now: datetime, misfire_grace_seconds: int) -> list[JobRun]:
    """Queue the runs of every active job whose slot has come, at most one per slot.

    Misfire policy: slots missed while the scheduler was down are coalesced: the latest of them
    runs (if it is no older than ``misfire_grace_seconds``), the ones before it are skipped.
    The unique (job, slot) constraint makes a second scheduler, or a restart, harmless.
    """
    queued = []
    jobs = db.scalars(select(Job).where(Job.schedule.is_not(None), Job.paused.is_(False)))
    for job in jobs:
        after = aware(job.last_slot) or aware(job.created_at) or now
        due = [t for t in _slots_between(job, after, now)]
        if not due:
            continue
        slot = due[-1].astimezone(timezone.utc)
        job.last_slot = slot
        if (now - slot).total_seconds() > misfire_grace_seconds:
            continue
        try:
            with db.begin_nested():
                queued.append(submit_run(db, job, {}, trigger="schedule", slot=slot))
        except IntegrityError:
            pass  # that slot already has its run
    db.flush()
    return queued


def _slots_between(job: Job, after: datetime, now: datetime, cap: int = 10_000) -> Iterable[datetime]:
    it = croniter(job.schedule, after.astimezone(ZoneInfo(job.timezone)))
    for _ in range(cap):
        t = it.get_next(datetime)
        if t > now:
            return
        yield t


def next_slot(db: Session) -> datetime | None:
    """The earliest time a scheduled job fires next."""
    earliest = None
    for job in db.scalars(select(Job).where(Job.schedule.is_not(None), Job.paused.is_(False))):
        after = aware(job.last_slot) or utcnow()
        t = croniter(job.schedule, after.astimezone(ZoneInfo(job.timezone))).get_next(datetime)
        if earliest is None or t < earliest:
            earliest = t
    return earliest


def retry_of(db: Session, job: Job, run: JobRun, now: datetime) -> JobRun | None:
    """Queue the next attempt of a failed or timed-out run, with exponential backoff."""
    if run.state not in (FAILED, TIMED_OUT) or run.attempt > job.max_retries:
        return None
    delay = job.retry_backoff_seconds * (2 ** (run.attempt - 1))
    return submit_run(db, job, run.parameters, trigger="retry", version=run.version,
                      attempt=run.attempt + 1, retry_of=run.retry_of or run.id,
                      not_before=now + timedelta(seconds=delay))


def orphaned_runs(db: Session, alive_pid: int) -> list[JobRun]:
    """Runs left ``running`` by a runner that is gone."""
    return list(db.scalars(select(JobRun).where(JobRun.state == RUNNING,
                                                JobRun.runner_pid != alive_pid)))


def expired_outputs(db: Session, job: Job) -> list[JobRun]:
    """Ended runs of ``job`` past its ``keep_runs`` newest whose files are still there."""
    # Only the rows past the newest keep_runs are read (a job may have thousands of runs).
    past = (select(JobRun.id).where(JobRun.job_id == job.id, JobRun.state.in_(TERMINAL))
            .order_by(JobRun.id.desc()).offset(job.keep_runs))
    return list(db.scalars(select(JobRun).where(JobRun.id.in_(past), JobRun.outputs_removed.is_(False))
                           .order_by(JobRun.id.desc())))


def latest_value(db: Session, job: Job, name: str) -> tuple[JobRun, RunValue] | None:
    """The value ``name`` from the newest succeeded run of ``job`` that recorded it."""
    row = db.execute(select(JobRun, RunValue).join(RunValue, RunValue.run_id == JobRun.id)
                     .where(JobRun.job_id == job.id, JobRun.state == SUCCEEDED, RunValue.name == name)
                     .order_by(JobRun.id.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def record_value(db: Session, blobs: BlobStore, run: JobRun, name: str, *, value: Any = None,
                 parquet: bytes | None = None) -> RunValue:
    if not isinstance(name, str) or not VALUE_NAME.match(name):
        raise JobError("use 1-100 letters, digits, '_', '.' or '-', starting with a letter",
                       field="name")
    if run.state != RUNNING:
        raise JobError(f"run {run.id} is {run.state}: values are recorded while it runs", status=409)
    if parquet is not None:
        if not parquet.startswith(b"PAR1"):
            raise JobError("the body is not a Parquet file", field="body")
        row = RunValue(run_id=run.id, name=name, kind="parquet", value=None, blob=blobs.put(parquet))
    else:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise JobError(f"must be JSON ({e}); record a DataFrame for tables", field="value") from None
        if len(text) > 1024 * 1024:
            raise JobError("values over 1 MiB go in a DataFrame (Parquet)", status=413, field="value")
        row = RunValue(run_id=run.id, name=name, kind="json", value=value)
    existing = db.scalar(select(RunValue).where(RunValue.run_id == run.id, RunValue.name == name))
    if existing is not None:
        db.delete(existing)
        db.flush()
    db.add(row)
    db.flush()
    return row


def progress(run: JobRun) -> float:
    if run.state == SUCCEEDED:
        return 1.0
    if not run.cells_total:
        return 0.0
    return math.floor(1000 * run.cells_done / run.cells_total) / 1000
