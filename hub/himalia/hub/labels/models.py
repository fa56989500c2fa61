"""Tables of labeling: label sets, their items, annotators' leases, annotations and snapshots."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary,
                        String, Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base, utcnow

SINGLE, MULTI = "single", "multi"
TASKS = (SINGLE, MULTI)
TEXT, IMAGE, ROW = "text", "image", "row"


class LabelSet(Base):
    """What to label and how: classes, the task, how many people label each item (k), who."""

    __tablename__ = "himalia_labelsets"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(255), index=True)
    task: Mapped[str] = mapped_column(String(16), default=SINGLE)
    classes: Mapped[list] = mapped_column(JSON, default=list)
    instructions: Mapped[str] = mapped_column(Text, default="")
    k: Mapped[int] = mapped_column(Integer, default=1)
    shared_users: Mapped[list] = mapped_column(JSON, default=list)
    shared_groups: Mapped[list] = mapped_column(JSON, default=list)
    #: How the queue is ordered: "" (as added) or an uncertainty strategy of active learning.
    strategy: Mapped[str] = mapped_column(String(32), default="")
    #: Where the uncertainty scores came from (an MLflow model URI, or an estimator's class).
    model: Mapped[str] = mapped_column(String(512), default="")
    items_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelItem(Base):
    """One thing to label: a text, an image (its bytes) or a table row, under the caller's id."""

    __tablename__ = "himalia_label_items"
    __table_args__ = (UniqueConstraint("labelset_id", "key"),
                      Index("ix_himalia_label_items_queue", "labelset_id", "done", "priority",
                            "position"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    labelset_id: Mapped[int] = mapped_column(ForeignKey("himalia_labelsets.id", ondelete="CASCADE"))
    #: The item's id as its owner gave it.
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    row: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    media_type: Mapped[str] = mapped_column(String(64), default="")
    #: Where an image was read from, when it came from a file.
    source: Mapped[str] = mapped_column(String(1024), default="")
    position: Mapped[int] = mapped_column(Integer)
    #: Higher first: the model's uncertainty under active learning, else 0.
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    #: Labels given (undone ones not counted); the item leaves every queue at k.
    labels_count: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The owner's decision where annotators disagree.
    adjudicated: Mapped[list | None] = mapped_column(JSON, nullable=True)
    adjudicated_by: Mapped[str] = mapped_column(String(255), default="")


class Lease(Base):
    """An item handed to one annotator, reserved for them until ``expires``."""

    __tablename__ = "himalia_label_leases"
    __table_args__ = (UniqueConstraint("item_id", "user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    labelset_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("himalia_label_items.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(255))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Items skipped stay with their annotator (never handed to them again).
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)


class Annotation(Base):
    """One person's label of one item; an undone one is kept, marked."""

    __tablename__ = "himalia_label_annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    labelset_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("himalia_label_items.id", ondelete="CASCADE"),
                                         index=True)
    user: Mapped[str] = mapped_column(String(255))
    #: The classes given (one for single-label sets).
    label: Mapped[list] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The sender's id for this label, so a retried request stores it once.
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: Exactly one live (not undone) annotation per item and person: "live" while undone_at
    #: is null; an undone one holds its own id here instead, so it never collides.
    live_key: Mapped[str] = mapped_column(String(300), unique=True)


class Snapshot(Base):
    """A frozen, numbered copy of a label set's labels, for training and its lineage."""

    __tablename__ = "himalia_label_snapshots"
    __table_args__ = (UniqueConstraint("labelset_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    labelset_id: Mapped[int] = mapped_column(ForeignKey("himalia_labelsets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: SHA-256 of the canonical JSON of ``rows``: equal labels give equal hashes.
    sha256: Mapped[str] = mapped_column(String(64))
    items: Mapped[int] = mapped_column(Integer)
    annotations: Mapped[int] = mapped_column(Integer)
    agreement: Mapped[dict] = mapped_column(JSON, default=dict)
    rows: Mapped[list] = mapped_column(JSON, default=list)
