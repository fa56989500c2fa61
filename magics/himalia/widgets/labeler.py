"""The labeling widget: one item at a time, a key per class, labels saved as you go.

The front end (``labeler.js``) talks to the platform over HTTP where it can (JupyterLab's
server extension, or the standalone page) and otherwise through this widget's comm: it sends
``{"type": "call", "id", "method", "path", "body"}`` and the kernel performs the call with
the SDK client, answering ``{"type": "reply", "id", "status", "body"}``. Whatever the
transport, the front end reports each label the platform acknowledged (``acked``) so that
code in the kernel can react to it, e.g. re-rank the queue for active learning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import anywidget
import traitlets
from ipywidgets import CallbackDispatcher

from ..sdk.client import Client, HimaliaError

#: Methods the front end may ask the kernel to call, all under ``/api/v1/labelsets/``.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Keys the front end keeps for itself: undo, skip, comment.
RESERVED_KEYS = frozenset("usc")


def shortcut_keys(count: int) -> list[str]:
    """The keys of ``count`` classes, in order: 1..9, 0, then the letters the front end does not
    keep for itself (u: undo, s: skip, c: comment). Classes past those have no key."""
    keys = [*"1234567890", *(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in RESERVED_KEYS)]
    return keys[:count]


class Labeler(anywidget.AnyWidget):
    """Label the items of a label set, one at a time, in a notebook.

    ``labelset`` is the set's JSON as the platform API gives it (``GET /api/v1/labelsets/{id}``);
    ``client`` makes the calls the front end cannot make itself (by default, the kernel's own
    :meth:`Client.from_env`, made at the first call).
    """

    _esm = Path(__file__).with_name("labeler.js")
    _css = Path(__file__).with_name("labeler.css")

    labelset = traitlets.Dict(
        help="The label set's JSON (the front end refreshes its progress).").tag(sync=True)
    shortcuts = traitlets.List(
        traitlets.Unicode(), help="The key of each class, in order.").tag(sync=True)
    counted = traitlets.Int(
        0, help="Labels the platform acknowledged (set by the front end).").tag(sync=True)
    pending = traitlets.Int(
        0, help="Labels, skips and undos not yet acknowledged (set by the front end).").tag(sync=True)
    error = traitlets.Unicode(
        "", help="The error the front end shows ('' when none).").tag(sync=True)

    def __init__(self, labelset: dict, client: Client | None = None, **kwargs):
        super().__init__(labelset=labelset, **kwargs)
        self._client = client
        #: ``(item_id, label)`` of each label acknowledged, in order; undone labels are removed.
        self.acked: list[tuple[str, Any]] = []
        self._acked_ids: set[str] = set()
        self._label_handlers = CallbackDispatcher()
        self.on_msg(self._on_front_end_msg)

    @traitlets.observe("labelset")
    def _keys_of_classes(self, change) -> None:
        self.shortcuts = shortcut_keys(len(change["new"].get("classes") or []))

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client.from_env()
        return self._client

    def on_label(self, callback: Callable[[str, Any], Any], remove: bool = False) -> None:
        """Call ``callback(item_id, label)`` after each label the platform acknowledged
        (``label``: a class, or a list of classes in a multi-label set); ``remove=True``
        unregisters it."""
        self._label_handlers.register_callback(callback, remove=remove)

    def _on_front_end_msg(self, _widget, content: dict, _buffers) -> None:
        kind = content.get("type")
        if kind == "call":
            self.send(self._call(content))
        elif kind == "acked":
            # Every view of the widget reports the same acknowledgement: count it once.
            client_id = content.get("client_id") or ""
            if client_id and client_id in self._acked_ids:
                return
            if client_id:
                self._acked_ids.add(client_id)
            item_id, label = content.get("item_id"), content.get("label")
            self.acked.append((item_id, label))
            self._label_handlers(item_id, label)
        elif kind == "undone":
            item_id = content.get("item_id")
            for i in range(len(self.acked) - 1, -1, -1):
                if self.acked[i][0] == item_id:
                    del self.acked[i]
                    break

    def _call(self, message: dict) -> dict:
        """Carry out a front end's ``call`` message; the ``reply`` message to send back. The
        platform's errors keep their status and message; an unreachable platform is status 0."""
        reply: dict[str, Any] = {"type": "reply", "id": message.get("id")}
        method = str(message.get("method") or "GET").upper()
        if method not in METHODS:
            text = f"method: one of {', '.join(METHODS)}, not {method!r}."
            return {**reply, "status": 400, "body": {"status": 400, "message": text}}
        path = str(message.get("path") or "").lstrip("/")
        if any(part in (".", "..") for part in path.split("?", 1)[0].split("/")):
            text = f"path: a path below /api/v1/labelsets/, not {path!r}."
            return {**reply, "status": 400, "body": {"status": 400, "message": text}}
        try:
            response = self.client.raw(method, "labelsets/" + path, json=message.get("body"))
        except HimaliaError as e:
            return {**reply, "status": e.status, "body": {"status": e.status, "message": str(e)}}
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return {**reply, "status": response.status_code,
                "body": response.json() if is_json and response.content else None}
