"""Tables of the feature store besides Feast's own registry: statistics and materializations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base, utcnow

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


class FeatureStats(Base):
    """What a view's data looked like when its owner last applied or materialized it."""

    __tablename__ = "himalia_feature_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    view: Mapped[str] = mapped_column(String(255), unique=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    entities: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The newest event timestamp in the source: how fresh the data is.
    latest_event: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Per feature: count, nulls, mean, std, min, max and a histogram ``{edges, counts}``.
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Materialization(Base):
    """One load of a view's latest values into the online store, for an event-time interval."""

    __tablename__ = "himalia_feature_materializations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    view: Mapped[str] = mapped_column(String(255), index=True)
    owner: Mapped[str] = mapped_column(String(255))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default=RUNNING)
    message: Mapped[str] = mapped_column(Text, default="")
    #: The platform job run that did it, when it ran as a job.
    job_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
