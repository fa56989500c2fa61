"""Tables of dashboards: a published notebook, its versions, who it is shared with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base, utcnow


class Dashboard(Base):
    """A notebook its owner published for viewers; served at ``/services/dashboards/<name>/``."""

    __tablename__ = "himalia_dashboards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Names are global: they are the dashboard's address.
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    #: The scheduled job whose latest successful outputs the notebook shows (jobs' own id).
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    shared_users: Mapped[list] = mapped_column(JSON, default=list)
    shared_groups: Mapped[list] = mapped_column(JSON, default=list)
    #: Shared with everyone who holds the viewer role.
    shared_viewers: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    views: Mapped[int] = mapped_column(Integer, default=0)
    #: A PNG of the dashboard's first chart, taken by the dashboards service after a render.
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_viewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DashboardVersion(Base):
    """One publication of a dashboard's notebook (immutable)."""

    __tablename__ = "himalia_dashboard_versions"
    __table_args__ = (UniqueConstraint("dashboard_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dashboard_id: Mapped[int] = mapped_column(ForeignKey("himalia_dashboards.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    notebook: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
