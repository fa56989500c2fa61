"""Tables of model deployments: deployments, their versions, API keys and the prediction log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base, utcnow

#: A version's states: it is built, then started; it serves once healthy, else it failed.
#: A version that served and was replaced (or never got traffic) ends retired.
BUILDING, STARTING, SERVING, FAILED, RETIRED = "building", "starting", "serving", "failed", "retired"
STATES = (BUILDING, STARTING, SERVING, FAILED, RETIRED)
LIVE = (BUILDING, STARTING, SERVING)


class Deployment(Base):
    """A named endpoint at ``/models/<name>/``; which versions answer is their traffic share."""

    __tablename__ = "himalia_deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    #: Hub users besides the owner (and admins) who may call the endpoint and see it.
    shared_with: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeploymentVersion(Base):
    """One model served as one bento, by ``replicas`` processes, with a share of the traffic."""

    __tablename__ = "himalia_deployment_versions"
    __table_args__ = (UniqueConstraint("deployment_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("himalia_deployments.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    model_uri: Mapped[str] = mapped_column(String(1024))
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bento_tag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=BUILDING)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Percent of requests this version answers once serving (0..100).
    traffic: Mapped[int] = mapped_column(Integer, default=0)
    #: The share it is to get once healthy: 100 for a swap, the canary percent for a canary.
    target_traffic: Mapped[int] = mapped_column(Integer, default=100)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    #: The ``%%deploy`` cell's body (a service class, or pre- and post-processing); "" for none.
    service_code: Mapped[str] = mapped_column(Text, default="")
    #: Where it came from: ``{"notebook", "cell_hash", "cell_index", "job_run_id"}``.
    lineage: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Feature refs (``view:feature``) the router fills in by entity key before the model
    #: sees a request, and the views as the feature engine reads them (``ViewSpec`` JSON).
    features: Mapped[list | None] = mapped_column(JSON, nullable=True, default=list)
    feature_specs: Mapped[dict | None] = mapped_column(JSON, nullable=True, default=dict)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeploymentKey(Base):
    """An API key of one deployment, for programs without a hub account: only its hash is kept."""

    __tablename__ = "himalia_deployment_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("himalia_deployments.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Prediction(Base):
    """One request answered through the router: what came in, what went out, how fast."""

    __tablename__ = "himalia_predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("himalia_deployments.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    caller: Mapped[str] = mapped_column(String(255), default="")
    inputs: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[str] = mapped_column(Text, default="")
