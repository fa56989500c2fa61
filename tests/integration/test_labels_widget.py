"""The labeling widget's kernel side on the real platform (on SQLite: nothing here depends on
the database): a real IPython kernel, himalia's, with a scientist's platform environment, holds
a ``Labeler``; the test speaks to it as the widget's front end does when it has no HTTP route of
its own, with comm messages on the kernel's shell channel, and reads the kernel's answers on
IOPub. The platform API is the witness of what was stored."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import time
import uuid

import pytest
from jupyter_client import KernelManager

from himalia_testing import Person, free_port

pytestmark = pytest.mark.timeout(600)
CLASSES = ["billing", "bug", "feature"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def ada(sqlite_platform, unique_name_module):
    return Person(sqlite_platform, unique_name_module("wa"), "scientist")


class WidgetKernel:
    """A himalia kernel whose platform is ``api_url`` with ``token``; it shows widgets and
    exchanges comm messages with them as their front end would."""

    def __init__(self, api_url: str, token: str):
        self.manager = KernelManager(kernel_name="himalia")
        self.manager.start_kernel(env={**os.environ, "HIMALIA_API_URL": api_url,
                                       "JUPYTERHUB_API_TOKEN": token})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        self.last_call = 0

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def _iopub_until(self, found, timeout: float, what: str):
        """IOPub messages in order until ``found(msg)`` returns a value, which is returned."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                break
            value = found(msg)
            if value is not None:
                return value
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def run(self, code: str, timeout: float = 120) -> dict:
        """Run ``code``; its printed text and rich outputs. Fails on an error."""
        msg_id = self.client.execute(code)
        out = {"stdout": "", "data": []}

        def collect(msg):
            if msg["parent_header"].get("msg_id") != msg_id:
                return None
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out["stdout"] += content["text"]
            elif kind in ("display_data", "execute_result"):
                out["data"].append(content["data"])
            elif kind == "error":
                raise AssertionError(f"{content['ename']}: {content['evalue']}\n{out['stdout']}")
            elif kind == "status" and content["execution_state"] == "idle":
                return out
            return None

        return self._iopub_until(collect, timeout, f"the kernel to run {code!r}")

    def show(self, code: str) -> str:
        """Run ``code``, whose last line is a widget; the id of its model (and comm)."""
        views = [d[WIDGET_VIEW] for d in self.run(code)["data"] if WIDGET_VIEW in d]
        assert views, f"no widget shown by {code!r}"
        return views[-1]["model_id"]

    def send(self, comm_id: str, data: dict) -> None:
        """A comm message from the widget's front end (``data``: ipywidgets' method and fields)."""
        self.client.shell_channel.send(self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

    def custom(self, comm_id: str, content: dict) -> None:
        """A message of the widget's own protocol from its front end."""
        self.send(comm_id, {"method": "custom", "content": content})

    def call(self, comm_id: str, method: str, path: str, body=None, timeout: float = 60) -> dict:
        """A ``call`` of the front end; the kernel's ``reply``."""
        self.last_call += 1
        call_id = self.last_call
        self.custom(comm_id, {"type": "call", "id": call_id, "method": method, "path": path, "body": body})

        def reply(msg):
            content = msg["content"]
            if msg["msg_type"] != "comm_msg" or content.get("comm_id") != comm_id:
                return None
            data = content["data"]
            answer = data.get("content") or {}
            if data.get("method") == "custom" and answer.get("type") == "reply" and answer.get("id") == call_id:
                return answer
            return None

        return self._iopub_until(reply, timeout, f"the reply to {method} {path}")


@pytest.fixture(scope="module")
def kernel(sqlite_platform, ada):
    k = WidgetKernel(f"{sqlite_platform.url}/services/himalia/", ada.token)
    try:
        yield k
    finally:
        k.close()


def text_set(ada: Person, name: str, texts: list[str], task: str = "single") -> dict:
    ls = ada.ok("POST", "/labelsets", 201, json={"name": name, "classes": CLASSES, "task": task})
    ada.ok("POST", f"/labelsets/{ls['id']}/items", 201,
           json=[{"id": f"t{n}", "text": text} for n, text in enumerate(texts)])
    return ls


def show_labeler(kernel: WidgetKernel, set_id: int, name: str = "labeler") -> str:
    return kernel.show(f"""
import json
from himalia.sdk import Client
from himalia.widgets import Labeler
{name} = Labeler(Client.from_env().request("GET", "labelsets/{set_id}"))
{name}_calls = []
{name}.on_label(lambda item_id, label: {name}_calls.append((item_id, label)))
{name}
""")


def test_the_widget_carries_the_set_and_a_key_per_class(ada, kernel):
    ls = text_set(ada, "keys", ["refund please"])
    show_labeler(kernel, ls["id"])
    out = kernel.run("print(json.dumps([labeler.labelset['name'], labeler.shortcuts]))")
    assert json.loads(out["stdout"]) == ["keys", ["1", "2", "3"]]


def test_a_call_stores_the_label_on_the_platform(ada, kernel):
    ls = text_set(ada, "store", ["charged twice", "crash on save"])
    comm = show_labeler(kernel, ls["id"])
    nxt = kernel.call(comm, "GET", f"{ls['id']}/next?n=3&inline=1")
    assert nxt["status"] == 200 and [i["id"] for i in nxt["body"]["items"]] == ["t0", "t1"]
    assert nxt["body"]["item"]["text"] == "charged twice"
    client_id = str(uuid.uuid4())
    body = {"item_id": "t0", "label": "billing", "comment": "twice", "seconds": 1.25, "client_id": client_id}
    reply = kernel.call(comm, "POST", f"{ls['id']}/annotations", body)
    assert reply["status"] == 201 and reply["body"]["label"] == "billing"
    stored = ada.ok("GET", f"/labelsets/{ls['id']}/annotations")["annotations"]
    assert [(a["item_id"], a["label"], a["comment"], a["seconds"]) for a in stored] == [
        ("t0", "billing", "twice", 1.25)]


def test_a_retried_call_with_the_same_client_id_stores_the_label_once(ada, kernel):
    ls = text_set(ada, "retry", ["crash on save"])
    comm = show_labeler(kernel, ls["id"])
    kernel.call(comm, "GET", f"{ls['id']}/next")
    body = {"item_id": "t0", "label": "bug", "client_id": str(uuid.uuid4())}
    first = kernel.call(comm, "POST", f"{ls['id']}/annotations", body)
    again = kernel.call(comm, "POST", f"{ls['id']}/annotations", body)
    assert (first["status"], again["status"]) == (201, 200)
    assert again["body"] == first["body"]
    stored = ada.ok("GET", f"/labelsets/{ls['id']}/annotations")["annotations"]
    assert [(a["item_id"], a["label"]) for a in stored] == [("t0", "bug")]
    assert ada.ok("GET", f"/labelsets/{ls['id']}")["progress"]["mine"] == 1


def test_undo_and_skip_through_the_kernel(ada, kernel):
    ls = text_set(ada, "undo", ["one", "two"])
    comm = show_labeler(kernel, ls["id"])
    kernel.call(comm, "GET", f"{ls['id']}/next?n=2")
    assert kernel.call(comm, "POST", f"{ls['id']}/annotations", {"item_id": "t0", "label": "bug"})["status"] == 201
    undone = kernel.call(comm, "DELETE", f"{ls['id']}/annotations/t0")
    assert undone["status"] == 200 and undone["body"]["item"]["id"] == "t0"
    assert kernel.call(comm, "POST", f"{ls['id']}/skip", {"item_id": "t1"}) == {
        "type": "reply", "id": kernel.last_call, "status": 200, "body": {}}
    assert ada.ok("GET", f"/labelsets/{ls['id']}/annotations")["annotations"] == []
    # The undone item is back in the queue; the skipped one is not.
    again = kernel.call(comm, "GET", f"{ls['id']}/next?n=3")
    assert [i["id"] for i in again["body"]["items"]] == ["t0"]


def test_image_items_come_inline_as_data_urls(ada, kernel):
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 128, 255)).save(png, format="PNG")
    ls = ada.ok("POST", "/labelsets", 201, json={"name": "pics", "classes": ["cat", "dog"]})
    ada.ok("POST", f"/labelsets/{ls['id']}/items", 201,
           json=[{"id": "p0", "image": base64.b64encode(png.getvalue()).decode()}])
    comm = show_labeler(kernel, ls["id"])
    item = kernel.call(comm, "GET", f"{ls['id']}/next?n=3&inline=1")["body"]["item"]
    assert item["kind"] == "image" and item["image_path"] == f"{ls['id']}/items/p0/image"
    assert item["image"] == "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()


def test_acked_messages_call_on_label_callbacks_once_each(ada, kernel):
    ls = text_set(ada, "acked", ["a", "b"], task="multi")
    comm = show_labeler(kernel, ls["id"], "multi")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    # Two views of one widget report the same acknowledgement: it counts once.
    for client_id, item_id, label in ((first, "t0", ["bug"]), (first, "t0", ["bug"]),
                                      (second, "t1", ["billing", "feature"])):
        kernel.custom(comm, {"type": "acked", "item_id": item_id, "label": label, "client_id": client_id})
    kernel.custom(comm, {"type": "undone", "item_id": "t0"})
    out = kernel.run("print(json.dumps([multi_calls, multi.acked]))")
    calls, acked = json.loads(out["stdout"])
    assert calls == [["t0", ["bug"]], ["t1", ["billing", "feature"]]]
    assert acked == [["t1", ["billing", "feature"]]]


def test_the_front_ends_counts_reach_the_kernel(ada, kernel):
    ls = text_set(ada, "counts", ["a"])
    comm = show_labeler(kernel, ls["id"], "counting")
    kernel.send(comm, {"method": "update", "state": {"counted": 3, "pending": 1, "error": "offline"},
                       "buffer_paths": []})
    out = kernel.run("print(counting.counted, counting.pending, counting.error)")
    assert out["stdout"].split() == ["3", "1", "offline"]


def test_an_error_answer_carries_the_platforms_status_and_message(ada, kernel):
    ls = text_set(ada, "errors", ["a"])
    comm = show_labeler(kernel, ls["id"])
    wrong = kernel.call(comm, "POST", f"{ls['id']}/annotations", {"item_id": "t0", "label": "spam"})
    assert wrong["status"] == 400
    assert "'spam' is not a class" in wrong["body"]["message"]
    assert "billing, bug, feature" in wrong["body"]["message"]
    missing = kernel.call(comm, "DELETE", f"{ls['id']}/annotations/t0")
    assert missing["status"] == 404 and "no label of item 't0'" in missing["body"]["message"]
    assert kernel.call(comm, "GET", "999999/next")["status"] == 404
    refused = kernel.call(comm, "GET", "../whoami")
    assert refused["status"] == 400 and "below /api/v1/labelsets/" in refused["body"]["message"]
    assert ada.ok("GET", f"/labelsets/{ls['id']}/annotations")["annotations"] == []


def test_an_unreachable_platform_answers_status_0(ada, kernel):
    ls = text_set(ada, "away", ["a"])
    comm = kernel.show(f"""
from himalia.sdk import Client
from himalia.widgets import Labeler
Labeler(Client.from_env().request("GET", "labelsets/{ls['id']}"),
        client=Client("http://127.0.0.1:{free_port()}/", "no-token"))
""")
    reply = kernel.call(comm, "GET", f"{ls['id']}/next")
    assert reply["status"] == 0 and "Cannot reach the platform API" in reply["body"]["message"]
