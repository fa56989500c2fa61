"""Tables of scheduled notebook jobs: definitions, their immutable versions, runs and values."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base, utcnow

#: A run's states; the last four are terminal.
QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "succeeded", "failed", "timed_out", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)
STATES = (QUEUED, RUNNING, *TERMINAL)


class Job(Base):
    """A job definition; what it runs is its current :class:`JobVersion`."""

    __tablename__ = "himalia_jobs"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    schedule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    profile: Mapped[str] = mapped_column(String(64), default="")
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    retry_backoff_seconds: Mapped[int] = mapped_column(Integer, default=60)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    #: ``{"webhook": url | None, "email": [addresses], "on": ["failure", "success"]}``
    notify: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Runs whose outputs are kept; older ones lose their files (their records stay).
    keep_runs: Mapped[int] = mapped_column(Integer, default=50)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Outputs readable by viewers (dashboards).
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The last scheduled slot the scheduler has dealt with (queued or skipped).
    last_slot: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobVersion(Base):
    """What one version of a job runs: the notebook and input files, by content hash."""

    __tablename__ = "himalia_job_versions"
    __table_args__ = (UniqueConstraint("job_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("himalia_jobs.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    notebook: Mapped[str] = mapped_column(String(64))
    #: ``{name: {"type": "int"|..., "default": value, "help": str}}`` from the parameters cell.
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    #: ``{relative path: sha256}`` of the declared input files.
    inputs: Mapped[dict] = mapped_column(JSON, default=dict)
    source_path: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRun(Base):
    """One execution of a job version; at most one per (job, scheduled slot)."""

    __tablename__ = "himalia_job_runs"
    __table_args__ = (UniqueConstraint("job_id", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("himalia_jobs.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer)
    #: The scheduled time this run is for; None for manual runs and retries.
    slot: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual | retry | rerun
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    #: The failing cell: ``{"cell": index, "ename", "evalue", "traceback": [lines]}``.
    error: Mapped[dict] = mapped_column(JSON, default=dict)
    cells_done: Mapped[int] = mapped_column(Integer, default=0)
    cells_total: Mapped[int] = mapped_column(Integer, default=0)
    #: Seconds per code cell, in order.
    cell_seconds: Mapped[list] = mapped_column(JSON, default=list)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    runner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outputs_removed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class RunValue(Base):
    """A value a notebook recorded with ``himalia.sdk.record(name, value)``."""

    __tablename__ = "himalia_run_values"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("himalia_job_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # json | parquet
    value: Mapped[object] = mapped_column(JSON, nullable=True)
    #: sha256 of a Parquet blob (kind parquet).
    blob: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
