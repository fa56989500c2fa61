"""The rules of labeling: label sets, queues with leases, annotations, agreement, snapshots.

Queues: an annotator asks for their next items; each is leased to them for
:data:`LEASE_SECONDS` and counts against the item's k slots while leased, so with k people per
item nobody else takes the slot meanwhile. An item leaves every queue when it holds k live
labels; nobody gets an item they labeled or skipped. Every change of a set's queue runs under
that set's row lock (``SELECT ... FOR UPDATE`` on PostgreSQL; the API also serializes a set's
writes in-process, which covers SQLite), so concurrent annotators never overfill an item.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session

from .. import owners
from ..errors import PlatformError
from ..services.api.authz import is_owner_or_admin, may_use_shared
from ..services.api.identity import Identity
from ..unixusers import AccountError
from .models import (IMAGE, MULTI, ROW, SINGLE, TASKS, TEXT, Annotation, LabelItem, LabelSet,
                     Lease, Snapshot)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LEASE_SECONDS = 600
MAX_CLASSES = 100
MAX_K = 20
MAX_BATCH = 10_000
#: Largest item: an image's bytes, a text's UTF-8 or a row's JSON.
MAX_ITEM_BYTES = 10 * 2**20
MAX_COMMENT = 10_000
STRATEGIES = ("least_confidence", "margin", "entropy")
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp",
               "BMP": "image/bmp", "TIFF": "image/tiff"}


class LabelError(PlatformError):
    """A labeling request that cannot be carried out (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message, status)


@dataclass(frozen=True)
class LabelSettings:
    """Where people's own files are (image items read from files must come from there)."""

    system_users: bool = False
    user_prefix: str = "jupyter-"
    users_root: str = ""

    def to_json(self) -> dict:
        return {"system_users": self.system_users, "user_prefix": self.user_prefix,
                "users_root": self.users_root}


def now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(when: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -- label sets -------------------------------------------------------------------------------

def _classes(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise LabelError('classes: a non-empty list of class names, e.g. ["billing", "bug"].')
    classes = [str(c).strip() for c in value]
    if any(not c for c in classes):
        raise LabelError("classes: class names cannot be empty.")
    if len(classes) > MAX_CLASSES or any(len(c) > 100 for c in classes):
        raise LabelError(f"classes: at most {MAX_CLASSES} classes of at most 100 characters.")
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise LabelError(f"classes: {', '.join(twice)} appear more than once.")
    return classes


def _k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise LabelError(f"k: how many people label each item, 1 to {MAX_K}.")
    return value


def _names(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LabelError(f"{what}: a list of names.")
    return sorted(set(value))


def people(ls: LabelSet, group_members: dict[str, list[str]]) -> set[str]:
    """Who may label the set: its owner, the users and the members of the groups it is shared with."""
    found = {ls.owner, *ls.shared_users}
    for group in ls.shared_groups:
        found.update(group_members.get(group, []))
    return found


def check_k_fits(ls: LabelSet, group_members: dict[str, list[str]]) -> None:
    """Every item needs k different people: refuse a k above the people who may label it."""
    who = people(ls, group_members)
    if ls.k > len(who):
        raise LabelError(
            f"k={ls.k} needs {ls.k} different people per item, but '{ls.name}' is shared with "
            f"{len(who)} ({', '.join(sorted(who))}): share it with {ls.k - len(who)} more "
            f"(users or groups) or lower k.")


def create(session: Session, who: Identity, body: dict, group_members: dict[str, list[str]]) -> LabelSet:
    name = str(body.get("name") or "")
    if not NAME.fullmatch(name):
        raise LabelError(f"name: {name!r} is not a label set name (letters, digits, '_', '.', '-'; "
                         "128 at most, starting with a letter or digit).")
    task = body.get("task", SINGLE)
    if task not in TASKS:
        raise LabelError(f"task: {task!r} is not one of {', '.join(TASKS)}.")
    share = body.get("share") or {}
    if not isinstance(share, dict):
        raise LabelError("share: {users: [...], groups: [...]}.")
    ls = LabelSet(name=name, owner=who.name, task=task, classes=_classes(body.get("classes")),
                  instructions=str(body.get("instructions") or "")[:20_000], k=_k(body.get("k", 1)),
                  shared_users=_names(share.get("users"), "share.users"),
                  shared_groups=_names(share.get("groups"), "share.groups"))
    if share:
        check_k_fits(ls, group_members)
    if session.scalar(select(LabelSet.id).where(LabelSet.owner == who.name, LabelSet.name == name)):
        raise LabelError(f"You already have a label set named '{name}'.", 409)
    session.add(ls)
    session.flush()
    return ls


def visible(session: Session, who: Identity) -> list[LabelSet]:
    """The sets ``who`` owns or that are shared with them (admins: all)."""
    sets = session.scalars(select(LabelSet).order_by(LabelSet.id)).all()
    return [ls for ls in sets if may_label(who, ls)]


def may_label(who: Identity, ls: LabelSet) -> bool:
    return may_use_shared(who.name, who.roles, ls.owner, users=ls.shared_users,
                          groups=ls.shared_groups, member_of=who.groups, labelers=True)


def find(session: Session, who: Identity, ref: str, *, lock: bool = False) -> LabelSet:
    """The set with id ``ref`` (or, for its owner, name ``ref``) that ``who`` may label; 404
    otherwise (a set not shared with the caller is not revealed)."""
    query = select(LabelSet)
    if ref.isdigit():
        query = query.where(LabelSet.id == int(ref))
    else:
        query = query.where(LabelSet.name == ref, LabelSet.owner == who.name)
    if lock:
        query = query.with_for_update()
    ls = session.scalar(query)
    if ls is None or not may_label(who, ls):
        raise LabelError(f"No label set {ref} shared with '{who.name}'.", 404)
    return ls


def require_owner(who: Identity, ls: LabelSet, what: str) -> None:
    if not is_owner_or_admin(who, ls.owner):
        raise LabelError(f"Only the owner of '{ls.name}' ({ls.owner}) or an admin may {what}.", 403)


def share(ls: LabelSet, body: dict, group_members: dict[str, list[str]]) -> None:
    users = _names(body.get("users"), "users")
    groups = _names(body.get("groups"), "groups")
    before = ls.shared_users, ls.shared_groups
    ls.shared_users, ls.shared_groups = users, groups
    try:
        check_k_fits(ls, group_members)
    except LabelError:
        ls.shared_users, ls.shared_groups = before
        raise
    ls.updated_at = now()


def update_set(ls: LabelSet, body: dict, group_members: dict[str, list[str]]) -> None:
    if "instructions" in body:
        ls.instructions = str(body["instructions"] or "")[:20_000]
    if "k" in body:
        k, old = _k(body["k"]), ls.k
        ls.k = k
        try:
            check_k_fits(ls, group_members)
        except LabelError:
            ls.k = old
            raise
    if "classes" in body:
        classes = _classes(body["classes"])
        dropped = [c for c in ls.classes if c not in classes]
        if dropped:
            raise LabelError(f"classes: classes can be added, not removed ({', '.join(dropped)} "
                             "would lose their labels).")
        ls.classes = classes
    ls.updated_at = now()


# -- items -------------------------------------------------------------------------------------

def _decode_image(key: str, value: Any) -> tuple[bytes, str]:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str):
        raise LabelError(f"Item '{key}': image is the file's bytes, base64-encoded.")
    if len(value) > MAX_ITEM_BYTES * 4 // 3 + 4:
        raise LabelError(f"Item '{key}' is too large: at most {MAX_ITEM_BYTES // 2**20} MiB.", 413)
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LabelError(f"Item '{key}': image is not valid base64.") from None
    if len(data) > MAX_ITEM_BYTES:
        raise LabelError(f"Item '{key}' is too large: at most {MAX_ITEM_BYTES // 2**20} MiB.", 413)
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise LabelError(f"Item '{key}': the image cannot be decoded ({e}); send PNG, JPEG, GIF "
                         "or WebP bytes.") from None
    if kind not in IMAGE_TYPES:
        raise LabelError(f"Item '{key}': {kind} images are not shown by browsers; convert it to "
                         "PNG or JPEG.")
    return data, IMAGE_TYPES[kind]


def _check_source(settings: LabelSettings, owner: str, key: str, path: str) -> str:
    if not path.startswith("/"):
        raise LabelError(f"Item '{key}': source {path!r} must be an absolute path (the SDK makes it so).")
    try:
        root = owners.files_root(owner, system_users=settings.system_users,
                                 user_prefix=settings.user_prefix, users_root=settings.users_root)
    except AccountError:
        raise LabelError(f"{owner} has no Unix account yet: start your server once.", 409) from None
    normal = PurePosixPath(os.path.normpath(path))
    if normal != root and root not in normal.parents:
        raise LabelError(f"Item '{key}': {path} is outside your files ({root}); copy the image "
                         "there first.", 403)
    return str(normal)


def parse_items(settings: LabelSettings, ls: LabelSet, body: Any) -> list[dict]:
    """Check a batch of items completely before anything is written."""
    items = body.get("items") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise LabelError('Send a non-empty list of items: [{"id": "1", "text": "..."}, ...].')
    if len(items) > MAX_BATCH:
        raise LabelError(f"At most {MAX_BATCH} items per request; send them in batches.", 413)
    parsed, seen = [], set()
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise LabelError(f"Item {n}: an object with 'id' and one of 'text', 'image', 'row'.")
        key = item.get("id")
        if isinstance(key, (int, float)) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key or len(key) > 255 or "/" in key:
            raise LabelError(f"Item {n}: 'id' is a string of 1 to 255 characters without '/' "
                             "(it is part of the item's URLs).")
        if key in seen:
            raise LabelError(f"Item id '{key}' appears more than once in this batch.", 409)
        seen.add(key)
        kinds = [k for k in (TEXT, IMAGE, ROW) if item.get(k) is not None]
        if len(kinds) != 1:
            raise LabelError(f"Item '{key}': give exactly one of 'text', 'image' or 'row'.")
        kind = kinds[0]
        out = {"key": key, "kind": kind, "source": ""}
        if kind == TEXT:
            text = item[TEXT]
            if not isinstance(text, str):
                raise LabelError(f"Item '{key}': text is a string.")
            if len(text.encode("utf-8")) > MAX_ITEM_BYTES:
                raise LabelError(f"Item '{key}' is too large: at most {MAX_ITEM_BYTES // 2**20} MiB.", 413)
            out["text"] = text
        elif kind == ROW:
            row = item[ROW]
            if not isinstance(row, dict):
                raise LabelError(f"Item '{key}': row is an object column -> value.")
            if len(json.dumps(row, default=str)) > MAX_ITEM_BYTES:
                raise LabelError(f"Item '{key}' is too large: at most {MAX_ITEM_BYTES // 2**20} MiB.", 413)
            out["row"] = row
        else:
            out["image"], out["media_type"] = _decode_image(key, item[IMAGE])
        if item.get("source"):
            out["source"] = _check_source(settings, ls.owner, key, str(item["source"]))
        parsed.append(out)
    return parsed


def add_items(session: Session, ls: LabelSet, parsed: list[dict]) -> int:
    keys = [p["key"] for p in parsed]
    existing: list[str] = []
    for start in range(0, len(keys), 500):
        existing += session.scalars(select(LabelItem.key).where(
            LabelItem.labelset_id == ls.id, LabelItem.key.in_(keys[start:start + 500]))).all()
    if existing:
        shown = ", ".join(sorted(existing)[:5]) + (" ..." if len(existing) > 5 else "")
        raise LabelError(f"{len(existing)} item id(s) are already in '{ls.name}': {shown}. "
                         "Item ids are unique within a set.", 409)
    position = ls.items_count
    session.add_all(LabelItem(labelset_id=ls.id, position=position + n, **p)
                    for n, p in enumerate(parsed))
    ls.items_count += len(parsed)
    ls.updated_at = now()
    return len(parsed)


def image_path(ls: LabelSet, item: LabelItem) -> str:
    """Where an image item's bytes are, below ``/api/v1/labelsets/``."""
    return f"{ls.id}/items/{quote(item.key, safe='')}/image"


def content(ls: LabelSet, item: LabelItem) -> dict:
    """What the item shows: ``text``, ``row``, or where its image is (``image_path``)."""
    if item.kind == TEXT:
        return {"text": item.text}
    if item.kind == ROW:
        return {"row": item.row}
    return {"image_path": image_path(ls, item)}


def item_json(ls: LabelSet, item: LabelItem, inline: bool = False) -> dict:
    out: dict[str, Any] = {"id": item.key, "kind": item.kind, "labels_count": item.labels_count,
                           "done": item.done, **content(ls, item)}
    if inline and item.image is not None:
        out["image"] = f"data:{item.media_type};base64," + base64.b64encode(item.image).decode()
    if item.source:
        out["source"] = item.source
    return out


def get_item(session: Session, ls: LabelSet, key: str) -> LabelItem:
    item = session.scalar(select(LabelItem).where(LabelItem.labelset_id == ls.id, LabelItem.key == key))
    if item is None:
        raise LabelError(f"No item '{key}' in '{ls.name}'.", 404)
    return item


def list_items(session: Session, ls: LabelSet, offset: int, limit: int) -> list[LabelItem]:
    return list(session.scalars(select(LabelItem).where(LabelItem.labelset_id == ls.id)
                                .order_by(LabelItem.position).offset(offset).limit(limit)))


# -- the queue ---------------------------------------------------------------------------------

def _others_leases(item_id, user: str, when: datetime):
    """How many people other than ``user`` hold an unexpired lease of the item (a query)."""
    return select(func.count(Lease.id)).where(
        Lease.item_id == item_id, Lease.user != user, Lease.skipped.is_(False), Lease.expires > when)


def next_items(session: Session, ls: LabelSet, user: str, n: int) -> list[LabelItem]:
    """Up to ``n`` items for ``user``: those still leased to them first, then new ones (highest
    priority, then in the order added), each leased to them."""
    when = now()
    session.execute(delete(Lease).where(Lease.labelset_id == ls.id, Lease.user == user,
                                        Lease.skipped.is_(False), Lease.expires <= when))
    held = list(session.scalars(
        select(LabelItem).join(Lease, Lease.item_id == LabelItem.id)
        .where(Lease.labelset_id == ls.id, Lease.user == user, Lease.skipped.is_(False))
        .order_by(Lease.id).limit(n)))
    need = n - len(held)
    if need <= 0:
        return held
    mine = exists().where(Annotation.item_id == LabelItem.id, Annotation.user == user,
                          Annotation.undone_at.is_(None))
    leased_to_me = exists().where(Lease.item_id == LabelItem.id, Lease.user == user)
    fresh = list(session.scalars(
        select(LabelItem)
        .where(LabelItem.labelset_id == ls.id, LabelItem.done.is_(False), not_(mine),
               not_(leased_to_me),
               LabelItem.labels_count + _others_leases(LabelItem.id, user, when).scalar_subquery() < ls.k)
        .order_by(LabelItem.priority.desc(), LabelItem.position).limit(need)))
    expires = when + timedelta(seconds=LEASE_SECONDS)
    session.add_all(Lease(labelset_id=ls.id, item_id=item.id, user=user, expires=expires)
                    for item in fresh)
    return held + fresh


def _labels(ls: LabelSet, value: Any) -> list[str]:
    if ls.task == SINGLE:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, str):
            raise LabelError(f"label: one class of {', '.join(ls.classes)} (a single-label set).")
        values = [value]
    else:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LabelError(f"label: a list of classes of {', '.join(ls.classes)} (a multi-label set).")
        values = sorted(set(value), key=ls.classes.index if set(value) <= set(ls.classes) else str)
    unknown = [v for v in values if v not in ls.classes]
    if unknown:
        raise LabelError(f"label: {', '.join(map(repr, unknown))} is not a class of '{ls.name}'; "
                         f"its classes are {', '.join(ls.classes)}.")
    return values


def annotation_json(ls: LabelSet, a: Annotation, key: str) -> dict:
    return {"item_id": key, "user": a.user, "label": a.label[0] if ls.task == SINGLE else a.label,
            "comment": a.comment, "seconds": a.seconds, "client_id": a.client_id,
            "created_at": _aware(a.created_at).isoformat(),
            **({"undone_at": _aware(a.undone_at).isoformat()} if a.undone_at else {})}


def annotate(session: Session, ls: LabelSet, user: str, body: dict) -> tuple[Annotation, LabelItem, bool]:
    """Store ``user``'s label of an item; (annotation, item, created). A retry (same
    ``client_id``, or the same label again) returns the stored one, created=False."""
    key = body.get("item_id")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key:
        raise LabelError('item_id: the id of the item labeled, e.g. {"item_id": "17", "label": "bug"}.')
    label = _labels(ls, body.get("label"))
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise LabelError(f"comment: text of at most {MAX_COMMENT} characters.")
    seconds = body.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not 0 <= seconds < 10**7):
        raise LabelError("seconds: how long the item was looked at, a number >= 0.")
    client_id = body.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 64):
        raise LabelError("client_id: the sender's id of this label, 1 to 64 characters.")
    item = get_item(session, ls, key)
    if client_id:
        sent = session.scalar(select(Annotation).where(
            Annotation.labelset_id == ls.id, Annotation.user == user, Annotation.client_id == client_id))
        if sent is not None:
            return sent, item, False
    live = session.scalar(select(Annotation).where(
        Annotation.item_id == item.id, Annotation.user == user, Annotation.undone_at.is_(None)))
    if live is not None:
        if live.label == label:
            return live, item, False
        raise LabelError(f"You labeled item '{key}' already ({', '.join(live.label)}): undo that "
                         "label first to change it.", 409)
    when = now()
    others = session.scalar(_others_leases(item.id, user, when))
    if item.labels_count + (others or 0) >= ls.k:
        raise LabelError(f"Item '{key}' already has its {ls.k} label(s) from other people "
                         "(or is being labeled by them): ask for your next item.", 409)
    a = Annotation(labelset_id=ls.id, item_id=item.id, user=user, label=label, comment=comment,
                   seconds=float(seconds) if seconds is not None else None, client_id=client_id,
                   live_key=f"{item.id}:{user}")
    session.add(a)
    item.labels_count += 1
    item.done = item.labels_count >= ls.k
    session.execute(delete(Lease).where(Lease.item_id == item.id, Lease.user == user))
    session.flush()
    return a, item, True


def undo(session: Session, ls: LabelSet, user: str, key: str) -> LabelItem:
    """Take back ``user``'s label of an item; the item is leased back to them."""
    item = get_item(session, ls, key)
    live = session.scalar(select(Annotation).where(
        Annotation.item_id == item.id, Annotation.user == user, Annotation.undone_at.is_(None)))
    if live is None:
        raise LabelError(f"You have no label of item '{key}' to undo.", 404)
    live.undone_at = now()
    live.live_key = f"undone:{live.id}"
    item.labels_count -= 1
    item.done = item.labels_count >= ls.k
    session.execute(delete(Lease).where(Lease.item_id == item.id, Lease.user == user))
    session.add(Lease(labelset_id=ls.id, item_id=item.id, user=user,
                      expires=now() + timedelta(seconds=LEASE_SECONDS)))
    session.flush()
    return item


def skip(session: Session, ls: LabelSet, user: str, key: str) -> None:
    item = get_item(session, ls, key)
    session.execute(delete(Lease).where(Lease.item_id == item.id, Lease.user == user))
    session.add(Lease(labelset_id=ls.id, item_id=item.id, user=user, skipped=True,
                      expires=now() + timedelta(days=36500)))


def set_priorities(session: Session, ls: LabelSet, body: dict) -> int:
    scores = body.get("priorities")
    if not isinstance(scores, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
        raise LabelError("priorities: an object item id -> score (higher is labeled first).")
    strategy = body.get("strategy") or ""
    if strategy and strategy not in STRATEGIES:
        raise LabelError(f"strategy: one of {', '.join(STRATEGIES)}.")
    ids = dict(session.execute(select(LabelItem.key, LabelItem.id).where(
        LabelItem.labelset_id == ls.id, LabelItem.key.in_(list(scores)))).all())
    unknown = sorted(set(scores) - set(ids))
    if unknown:
        raise LabelError(f"No item(s) {', '.join(unknown[:5])} in '{ls.name}'.", 404)
    if ids:
        session.execute(update(LabelItem), [{"id": ids[k], "priority": float(v)} for k, v in scores.items()])
    ls.strategy, ls.model = strategy, str(body.get("model") or "")[:512]
    ls.updated_at = now()
    return len(ids)


# -- progress, agreement, conflicts -------------------------------------------------------------

def progress(session: Session, ls: LabelSet, user: str) -> dict:
    done = session.scalar(select(func.count(LabelItem.id)).where(
        LabelItem.labelset_id == ls.id, LabelItem.done.is_(True))) or 0
    per_user = dict(session.execute(select(Annotation.user, func.count(Annotation.id)).where(
        Annotation.labelset_id == ls.id, Annotation.undone_at.is_(None)).group_by(Annotation.user)).all())
    mine = exists().where(Annotation.item_id == LabelItem.id, Annotation.user == user,
                          Annotation.undone_at.is_(None))
    skipped = exists().where(Lease.item_id == LabelItem.id, Lease.user == user, Lease.skipped.is_(True))
    remaining = session.scalar(select(func.count(LabelItem.id)).where(
        LabelItem.labelset_id == ls.id, LabelItem.done.is_(False), not_(mine), not_(skipped))) or 0
    return {"items": ls.items_count, "done": done, "labels": sum(per_user.values()),
            "annotators": per_user, "mine": per_user.get(user, 0), "remaining_for_me": remaining}


def labelset_json(session: Session, ls: LabelSet, user: str) -> dict:
    return {"id": ls.id, "name": ls.name, "owner": ls.owner, "task": ls.task, "classes": ls.classes,
            "instructions": ls.instructions, "k": ls.k, "shared_users": ls.shared_users,
            "shared_groups": ls.shared_groups, "strategy": ls.strategy, "model": ls.model,
            "created_at": _aware(ls.created_at).isoformat(),
            "progress": progress(session, ls, user)}


def votes(session: Session, ls: LabelSet) -> dict[int, dict[str, list[str]]]:
    """Live labels per item id: {item id: {user: classes}}."""
    out: dict[int, dict[str, list[str]]] = defaultdict(dict)
    for item_id, user, label in session.execute(
            select(Annotation.item_id, Annotation.user, Annotation.label)
            .where(Annotation.labelset_id == ls.id, Annotation.undone_at.is_(None))
            .order_by(Annotation.id)):
        out[item_id][user] = label
    return out


def _fleiss(counts: list[list[int]]) -> float | None:
    """Fleiss' kappa of items x categories rating counts (the same number of raters per item)."""
    import numpy as np

    m = np.asarray(counts, dtype=float)
    n = m.sum(axis=1)[0]
    if m.shape[0] == 0 or n < 2:
        return None
    p_j = m.sum(axis=0) / m.sum()
    p_i = ((m * m).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j * p_j).sum()
    return None if p_e >= 1 else float((p_bar - p_e) / (1 - p_e))


def _finite(value: float | None) -> float | None:
    import math

    return None if value is None or math.isnan(value) else round(float(value), 6)


def agreement(session: Session, ls: LabelSet) -> dict:
    """Cohen's kappa when two people labeled the set, Fleiss' kappa for more; per class (a
    class against the rest) and the confusion of labels between annotators: with two,
    ``matrix[i][j]`` counts items ``annotators[0]`` labeled ``classes[i]`` and ``annotators[1]``
    ``classes[j]``; with more, every ordered pair of two people's labels of an item."""
    from sklearn.metrics import cohen_kappa_score

    per_item = [v for v in votes(session, ls).values() if len(v) >= 2]
    annotators = sorted({u for v in per_item for u in v})
    classes = ls.classes
    result: dict[str, Any] = {"method": None, "kappa": None, "per_class": {c: None for c in classes},
                              "confusion": {"classes": classes, "matrix": [[0] * len(classes) for _ in classes]},
                              "items": 0, "annotators": annotators, "task": ls.task}
    if not per_item:
        return result
    index = {c: i for i, c in enumerate(classes)}
    if len(annotators) == 2:
        a, b = annotators
        both = [v for v in per_item if a in v and b in v]
        result.update(method="cohen", items=len(both))
        if not both:
            return result
        for c in classes:
            x = [int(c in v[a]) for v in both]
            y = [int(c in v[b]) for v in both]
            result["per_class"][c] = _finite(cohen_kappa_score(x, y)) if len(set(x + y)) > 1 else None
        if ls.task == SINGLE:
            result["kappa"] = _finite(cohen_kappa_score([v[a][0] for v in both], [v[b][0] for v in both],
                                                        labels=classes))
        for v in both:
            for ca in v[a]:
                for cb in v[b]:
                    result["confusion"]["matrix"][index[ca]][index[cb]] += 1
    else:
        size = Counter(len(v) for v in per_item).most_common(1)[0][0]
        rated = [v for v in per_item if len(v) == size]
        result.update(method="fleiss", items=len(rated))
        for c in classes:
            result["per_class"][c] = _finite(_fleiss([[sum(c in lab for lab in v.values()),
                                                        sum(c not in lab for lab in v.values())]
                                                       for v in rated]))
        if ls.task == SINGLE:
            result["kappa"] = _finite(_fleiss([[sum(lab[0] == c for lab in v.values()) for c in classes]
                                               for v in rated]))
        for v in rated:  # every ordered pair of two different people's labels of an item
            labs = list(v.values())
            for i, la in enumerate(labs):
                for j, lb in enumerate(labs):
                    if i != j:
                        for ca in la:
                            for cb in lb:
                                result["confusion"]["matrix"][index[ca]][index[cb]] += 1
    if ls.task == MULTI:
        known = [k for k in result["per_class"].values() if k is not None]
        result["kappa"] = round(sum(known) / len(known), 6) if known else None
    return result


def final_label(ls: LabelSet, item: LabelItem, item_votes: dict[str, list[str]]):
    """The adjudicated label, else the majority's (single: ties give None; multi: classes chosen
    by more than half)."""
    if item.adjudicated is not None:
        return item.adjudicated[0] if ls.task == SINGLE else item.adjudicated
    if not item_votes:
        return None
    if ls.task == SINGLE:
        ranked = Counter(v[0] for v in item_votes.values()).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return None
        return ranked[0][0]
    chosen = Counter(c for v in item_votes.values() for c in v)
    return [c for c in ls.classes if chosen[c] * 2 > len(item_votes)]


def conflicts(session: Session, ls: LabelSet, limit: int = 500) -> list[dict]:
    """Items whose labels disagree, with each person's label and the owner's decision if any."""
    found = []
    by_item = votes(session, ls)
    disputed = [i for i, v in by_item.items() if len({tuple(x) for x in v.values()}) > 1]
    for item in session.scalars(select(LabelItem).where(LabelItem.id.in_(disputed[:limit]))
                                .order_by(LabelItem.position)):
        v = by_item[item.id]
        found.append({"item_id": item.key,
                      "votes": {u: (lab[0] if ls.task == SINGLE else lab) for u, lab in v.items()},
                      "adjudicated": (item.adjudicated[0] if ls.task == SINGLE else item.adjudicated)
                      if item.adjudicated is not None else None,
                      "adjudicated_by": item.adjudicated_by or None})
    return found


def adjudicate(session: Session, ls: LabelSet, who: Identity, key: str, body: dict) -> LabelItem:
    item = get_item(session, ls, key)
    item.adjudicated = _labels(ls, body.get("label"))
    item.adjudicated_by = who.name
    return item


# -- snapshots ---------------------------------------------------------------------------------

def snapshot_rows(session: Session, ls: LabelSet) -> tuple[list[dict], int]:
    """One row per item with a label (final, votes, agreement), in the order items were added."""
    by_item = votes(session, ls)
    rows, annotations = [], 0
    items = session.scalars(select(LabelItem).where(
        LabelItem.labelset_id == ls.id,
        or_(LabelItem.labels_count > 0, LabelItem.adjudicated.is_not(None)))
        .order_by(LabelItem.position))
    for item in items:
        v = by_item.get(item.id, {})
        annotations += len(v)
        final = final_label(ls, item, v)
        agree = [u for u, lab in v.items() if (lab[0] if ls.task == SINGLE else lab) == final]
        row = {"item_id": item.key, "kind": item.kind, "label": final,
               "votes": {u: (lab[0] if ls.task == SINGLE else lab) for u, lab in sorted(v.items())},
               "n_labels": len(v), "agreement": round(len(agree) / len(v), 6) if v else None,
               "adjudicated": item.adjudicated is not None}
        rows.append({**row, **content(ls, item)})
    return rows, annotations


def take_snapshot(session: Session, ls: LabelSet, who: Identity) -> tuple[Snapshot, bool]:
    """A new numbered snapshot of the labels, or the latest one when nothing changed since."""
    rows, annotations = snapshot_rows(session, ls)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str)
                            .encode()).hexdigest()
    last = session.scalar(select(Snapshot).where(Snapshot.labelset_id == ls.id)
                          .order_by(Snapshot.version.desc()).limit(1))
    if last is not None and last.sha256 == digest:
        return last, False
    snap = Snapshot(labelset_id=ls.id, version=(last.version + 1) if last else 1, created_by=who.name,
                    sha256=digest, items=len(rows), annotations=annotations,
                    agreement=agreement(session, ls), rows=rows)
    session.add(snap)
    session.flush()
    return snap, True


def snapshot_json(ls: LabelSet, snap: Snapshot, rows: bool = False) -> dict:
    out = {"labelset": ls.name, "labelset_id": ls.id, "version": snap.version, "sha256": snap.sha256,
           "items": snap.items, "annotations": snap.annotations, "agreement": snap.agreement,
           "created_by": snap.created_by, "created_at": _aware(snap.created_at).isoformat()}
    if rows:
        out["rows"] = snap.rows
    return out


def get_snapshot(session: Session, ls: LabelSet, version: int) -> Snapshot:
    snap = session.scalar(select(Snapshot).where(Snapshot.labelset_id == ls.id, Snapshot.version == version))
    if snap is None:
        raise LabelError(f"'{ls.name}' has no snapshot {version}.", 404)
    return snap


def snapshots(session: Session, ls: LabelSet) -> list[Snapshot]:
    return list(session.scalars(select(Snapshot).where(Snapshot.labelset_id == ls.id)
                                .order_by(Snapshot.version)))


def annotations(session: Session, ls: LabelSet, who: Identity, include_undone: bool = False) -> list[dict]:
    query = (select(Annotation, LabelItem.key).join(LabelItem, LabelItem.id == Annotation.item_id)
             .where(Annotation.labelset_id == ls.id).order_by(Annotation.id))
    if not is_owner_or_admin(who, ls.owner):
        query = query.where(Annotation.user == who.name)
    if not include_undone:
        query = query.where(Annotation.undone_at.is_(None))
    return [annotation_json(ls, a, key) for a, key in session.execute(query)]

