"""Label sets through the real app (``/api/v1/labelsets``) on SQLite: who may call what, the
contract's answers, bad input, queues, undo, snapshots and agreement against hand-computed
figures. The hub's answers about tokens and groups are replaced as in test_api_security (the
hub cannot run in a unit test); tests/integration/test_labels.py runs the real hub."""

from __future__ import annotations

import base64
import dataclasses
import io

import pytest
from fastapi.testclient import TestClient

from himalia.hub.labels import api as labels_api
from himalia.hub.labels.service import LabelSettings
from himalia.hub.services.api import create_app
from himalia.hub.services.api.identity import xsrf_token
from unit.test_api_security import (NO_ROLE_MESSAGE, PREFIX, SAME_ORIGIN_FETCH, SECRET, TOKENS,
                                    cookie, db_url, hub, hub_user, protected_endpoints, settings,
                                    token)

__all__ = ["db_url", "hub"]  # fixtures used here

API = f"{PREFIX}/api/v1/labelsets"
GROUPS = {"team-a": ["sam", "tess"], "labelers": ["lea", "leo"]}
PEOPLE = {"tok-sam2": hub_user("tess", ["team-a"], ["scientist"]),
          "tok-labeler": hub_user("lea", ["labelers"], ["labeler"]),
          "tok-labeler2": hub_user("leo", ["labelers"], ["labeler"])}


@pytest.fixture
def client(db_url, tmp_path, monkeypatch):
    for name, model in PEOPLE.items():
        monkeypatch.setitem(TOKENS, name, model)

    def members(self, groups):
        missing = [g for g in groups if g not in GROUPS]
        if missing:
            raise labels_api.LabelError(f"No hub group '{missing[0]}'", 404)
        return {g: GROUPS[g] for g in groups}

    monkeypatch.setattr(labels_api.GroupMembers, "__call__", members)
    labels = LabelSettings(users_root=str(tmp_path / "users"))
    app = create_app(dataclasses.replace(settings(db_url), labels=labels))
    with TestClient(app, follow_redirects=False) as client:
        client.app_routes = protected_endpoints(app)
        yield client


def new_set(client, name="tickets", classes=("billing", "bug", "feature"), k=1, who="tok-scientist",
            **extra) -> dict:
    r = client.post(API, json={"name": name, "classes": list(classes), "k": k, **extra}, headers=token(who))
    assert r.status_code == 201, r.text
    return r.json()


def add(client, set_id, items, who="tok-scientist", status=201):
    r = client.post(f"{API}/{set_id}/items", json=items, headers=token(who))
    assert r.status_code == status, r.text
    return r.json()


def label(client, set_id, item, value, who="tok-scientist", **extra):
    return client.post(f"{API}/{set_id}/annotations", json={"item_id": item, "label": value, **extra},
                       headers=token(who))


def png(color=(200, 30, 30)) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), color).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_every_labels_route_refuses_anonymous_role_less_and_viewers(client):
    routes = [(m, p) for m, p in client.app_routes
              if p.startswith(API) or p.startswith(f"{PREFIX}/label/")]
    assert len(routes) >= 20
    for method, path in routes:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        r = client.request(method, path, headers=token("tok-norole"))
        assert r.status_code == 403 and NO_ROLE_MESSAGE in r.json()["message"], (method, path)
        r = client.request(method, path, headers=token("tok-viewer"))
        assert r.status_code == 403, (method, path, r.text)
        assert "labeler" in r.json()["message"] and "scientist" in r.json()["message"], (method, path)


def test_labelers_reach_labeling_and_nothing_else(client):
    others = [(m, p) for m, p in client.app_routes
              if not (p.startswith(API) or p.startswith(f"{PREFIX}/label/"))]
    assert others, "the app has other routes"
    for method, path in others:
        r = client.request(method, path, headers=token("tok-labeler"))
        assert r.status_code == 403, (method, path, r.text)
        assert "labeler" in r.json()["message"], (method, path)
    # Creating sets is for scientists.
    r = client.post(API, json={"name": "x", "classes": ["a"]}, headers=token("tok-labeler"))
    assert r.status_code == 403 and "scientist" in r.json()["message"]
    # A set not shared with them does not exist for them.
    ls = new_set(client)
    assert client.get(f"{API}/{ls['id']}", headers=token("tok-labeler")).status_code == 404
    assert client.get(f"{API}/{ls['id']}/next", headers=token("tok-labeler")).status_code == 404
    assert client.get(API, headers=token("tok-labeler")).json()["labelsets"] == []
    # Shared with their group: they label it, but cannot manage it.
    r = client.post(f"{API}/{ls['id']}/share", json={"groups": ["labelers"]}, headers=token("tok-scientist"))
    assert r.status_code == 200, r.text
    add(client, ls["id"], [{"id": "1", "text": "refund please"}])
    assert client.get(f"{API}/{ls['id']}/next", headers=token("tok-labeler")).json()["item"]["id"] == "1"
    for method, path, body in [("POST", "/items", [{"id": "2", "text": "x"}]), ("POST", "/share", {"users": []}),
                               ("GET", "/agreement", None), ("GET", "/conflicts", None),
                               ("POST", "/snapshots", None), ("DELETE", "", None)]:
        r = client.request(method, f"{API}/{ls['id']}{path}", json=body, headers=token("tok-labeler"))
        assert r.status_code == 403 and "owner" in r.json()["message"], (path, r.text)
    # Another scientist not in the share list is refused too.
    assert client.get(f"{API}/{ls['id']}", headers=token("tok-sam2")).status_code == 404


def test_the_contract_create_items_share_next_annotate_agreement(client):
    ls = new_set(client, k=2)
    assert isinstance(ls["id"], int) and ls["k"] == 2 and ls["task"] == "single"
    assert add(client, ls["id"], [{"id": "t1", "text": "I was billed twice"},
                                  {"id": "r1", "row": {"amount": 12.5, "country": "FR"}},
                                  {"id": "i1", "image": png()}]) == {"added": 3, "items": 3}
    r = client.post(f"{API}/{ls['id']}/share", json={"users": ["lea"], "groups": []}, headers=token("tok-scientist"))
    assert r.json()["shared_users"] == ["lea"]
    seen = {"tok-scientist": [], "tok-labeler": []}
    for who in seen:
        while True:
            r = client.get(f"{API}/{ls['id']}/next", headers=token(who))
            if r.status_code == 204:
                break
            item = r.json()["item"]
            seen[who].append(item["id"])
            value = "bug" if item["id"] != "t1" else ("billing" if who == "tok-scientist" else "bug")
            assert label(client, ls["id"], item["id"], value, who=who).status_code == 201
    assert sorted(seen["tok-scientist"]) == sorted(seen["tok-labeler"]) == ["i1", "r1", "t1"]
    image = client.get(f"{API}/{ls['id']}/items/i1/image", headers=token("tok-labeler"))
    assert image.headers["content-type"] == "image/png" and image.content == base64.b64decode(png())
    everyone = client.get(f"{API}/{ls['id']}/annotations", headers=token("tok-scientist")).json()["annotations"]
    assert len(everyone) == 6 and {a["user"] for a in everyone} == {"sam", "lea"}
    own = client.get(f"{API}/{ls['id']}/annotations", headers=token("tok-labeler")).json()["annotations"]
    assert {a["user"] for a in own} == {"lea"} and len(own) == 3
    agreement = client.get(f"{API}/{ls['id']}/agreement", headers=token("tok-scientist")).json()
    assert agreement["method"] == "cohen" and agreement["items"] == 3
    # Hand-computed: sam (billing, bug, bug), lea (bug, bug, bug): p_o = 2/3; p_e = (1/3*0 +
    # 2/3*1) = 2/3 over the classes: kappa = (2/3 - 2/3) / (1 - 2/3) = 0.
    assert agreement["kappa"] == pytest.approx(0.0)
    # Rows: the first annotator's (lea) classes; columns: the second's (sam).
    assert agreement["annotators"] == ["lea", "sam"]
    matrix = dict(zip(agreement["confusion"]["classes"], agreement["confusion"]["matrix"]))
    assert matrix == {"billing": [0, 0, 0], "bug": [1, 2, 0], "feature": [0, 0, 0]}
    conflicts = client.get(f"{API}/{ls['id']}/conflicts", headers=token("tok-scientist")).json()["conflicts"]
    assert conflicts == [{"item_id": "t1", "votes": {"sam": "billing", "lea": "bug"},
                          "adjudicated": None, "adjudicated_by": None}]
    progress = client.get(f"{API}/{ls['id']}", headers=token("tok-scientist")).json()["progress"]
    assert progress == {"items": 3, "done": 3, "labels": 6, "annotators": {"lea": 3, "sam": 3},
                        "mine": 3, "remaining_for_me": 0}


def test_cohens_kappa_matches_the_hand_computed_value(client):
    ls = new_set(client, name="pairs", classes=("yes", "no"), k=2, share={"users": ["lea"]})
    # The classic 2x2 example: 50 items; both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_yes = 0.5*0.6 = 0.30, p_no = 0.5*0.4 = 0.20; p_e = 0.5;
    # kappa = (0.7 - 0.5) / 0.5 = 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    add(client, ls["id"], [{"id": str(n), "text": f"item {n}"} for n in range(len(pairs))])
    for n, (a, b) in enumerate(pairs):
        assert label(client, ls["id"], str(n), a).status_code == 201
        assert label(client, ls["id"], str(n), b, who="tok-labeler").status_code == 201
    agreement = client.get(f"{API}/{ls['id']}/agreement", headers=token("tok-scientist")).json()
    assert agreement["method"] == "cohen" and agreement["items"] == 50
    assert agreement["kappa"] == pytest.approx(0.4)
    assert agreement["per_class"] == {"yes": pytest.approx(0.4), "no": pytest.approx(0.4)}
    # Rows: lea's labels (the first annotator by name), columns: sam's.
    assert agreement["confusion"]["matrix"] == [[20, 10], [5, 15]]


def test_fleiss_kappa_matches_the_hand_computed_value(db_url):
    """Fleiss' own worked example (1971 form as usually taught): 10 items, 14 raters, 5
    classes; kappa = 0.210 (P-bar = 0.378, P-e = 0.213)."""
    from himalia.hub.labels import service
    from himalia.hub.services.api.identity import Identity
    from himalia.hub.storage import Database

    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    classes = ["c1", "c2", "c3", "c4", "c5"]
    raters = [f"r{n}" for n in range(14)]
    owner = Identity(name="r0", kind="user", roles=["scientist"])
    db = Database(db_url)
    with db.session() as s:
        ls = service.create(s, owner, {"name": "fleiss", "classes": classes, "k": 14,
                                       "share": {"users": raters[1:]}}, {})
        service.add_items(s, ls, service.parse_items(LabelSettings(), ls,
                                                     [{"id": str(i), "text": "x"} for i in range(10)]))
        for i, counts in enumerate(table):
            given = [c for c, n in zip(classes, counts) for _ in range(n)]
            for rater, value in zip(raters, given):
                service.annotate(s, ls, rater, {"item_id": str(i), "label": value})
        result = service.agreement(s, ls)
    db.close()
    assert result["method"] == "fleiss" and result["items"] == 10
    assert result["kappa"] == pytest.approx(0.2099, abs=5e-4)
    # Per class j: 1 - sum_i n_ij (n - n_ij) / (N n (n - 1) p_j q_j); class 5 by hand:
    # p_5 = 32/140; sum n_i5 (14 - n_i5) = 0+24+48+0+13+0+0+24+0+49 = 158;
    # 1 - 158 / (10*14*13 * (32/140) * (108/140)) = 1 - 158/320.91 = 0.5077.
    assert result["per_class"]["c5"] == pytest.approx(0.5077, abs=5e-4)


def test_bad_input_is_a_clear_4xx_and_writes_nothing(client, tmp_path):
    h = token("tok-scientist")
    cases = [
        ({"name": "a", "classes": []}, 400, "non-empty list"),
        ({"name": "a", "classes": ["x", "x"]}, 400, "more than once"),
        ({"name": "a b", "classes": ["x"]}, 400, "not a label set name"),
        ({"name": "a", "classes": ["x"], "task": "boxes"}, 400, "single, multi"),
        ({"name": "a", "classes": ["x"], "k": 0}, 400, "1 to 20"),
        ({"name": "a", "classes": ["x"], "k": 3, "share": {"users": ["lea"]}}, 400, "share it with 1 more"),
    ]
    for body, status, text in cases:
        r = client.post(API, json=body, headers=h)
        assert r.status_code == status and text in r.json()["message"], (body, r.text)
    assert client.get(API, headers=h).json()["labelsets"] == []
    ls = new_set(client, k=2, share={"users": ["lea"]})
    add(client, ls["id"], [{"id": "1", "text": "ok"}])
    item_cases = [
        ([{"id": "2", "text": "a"}, {"id": "2", "text": "b"}], 409, "more than once"),
        ([{"id": "3", "text": "a"}, {"id": "1", "text": "b"}], 409, "already in 'tickets'"),
        ([{"id": "4", "image": base64.b64encode(b"not an image").decode()}], 400, "cannot be decoded"),
        ([{"id": "5", "image": "%%%"}], 400, "not valid base64"),
        ([{"id": "6", "text": "x" * (10 * 2**20 + 1)}], 413, "too large"),
        ([{"id": "7", "image": png(), "source": "/etc/passwd"}], 403, "outside your files"),
        ([{"id": "8"}], 400, "exactly one of"),
        ([{"id": "a/b", "text": "x"}], 400, "without '/'"),
        ([], 400, "non-empty list"),
    ]
    for items, status, text in item_cases:
        r = client.post(f"{API}/{ls['id']}/items", json=items, headers=h)
        assert r.status_code == status and text in r.json()["message"], (items[:1], r.text[:300])
    listed = client.get(f"{API}/{ls['id']}/items", headers=h).json()
    assert listed["total"] == 1 and [i["id"] for i in listed["items"]] == ["1"]
    r = label(client, ls["id"], "1", "spam")
    assert r.status_code == 400 and "billing, bug, feature" in r.json()["message"]
    r = label(client, ls["id"], "nope", "bug")
    assert r.status_code == 404
    r = client.post(f"{API}/{ls['id']}/share", json={"users": []}, headers=h)
    assert r.status_code == 400 and "k=2" in r.json()["message"]
    assert client.get(f"{API}/{ls['id']}", headers=h).json()["shared_users"] == ["lea"]
    r = client.post(f"{API}/{ls['id']}/share", json={"groups": ["nope"]}, headers=h)
    assert r.status_code == 404 and "nope" in r.json()["message"]
    r = client.post(API, json={"name": "tickets", "classes": ["x"]}, headers=h)
    assert r.status_code == 409
    assert client.get(f"{API}/{ls['id']}/annotations", headers=h).json()["annotations"] == []
    # An image from a file inside the owner's files is accepted (the SDK sends its bytes).
    source = tmp_path / "users" / "sam" / "photo.png"
    add(client, ls["id"], [{"id": "9 #1", "image": png(), "source": str(source)}])
    (item,) = [i for i in client.get(f"{API}/{ls['id']}/items", headers=h).json()["items"] if i["kind"] == "image"]
    assert item["image_path"] == f"{ls['id']}/items/9%20%231/image"
    assert client.get(f"{API}/{item['image_path']}", headers=h).content == base64.b64decode(png())


def test_a_retry_stores_once_undo_takes_back_and_skip_is_final(client):
    ls = new_set(client)
    add(client, ls["id"], [{"id": str(n), "text": f"t{n}"} for n in range(3)])
    first = label(client, ls["id"], "0", "bug", client_id="c-1")
    again = label(client, ls["id"], "0", "bug", client_id="c-1")
    assert first.status_code == 201 and again.status_code == 200 and again.json() == first.json()
    r = label(client, ls["id"], "0", "billing")
    assert r.status_code == 409 and "undo" in r.json()["message"]
    r = client.delete(f"{API}/{ls['id']}/annotations/0", headers=token("tok-scientist"))
    assert r.status_code == 200 and r.json()["item"]["id"] == "0"
    assert client.get(f"{API}/{ls['id']}/next", headers=token("tok-scientist")).json()["item"]["id"] == "0"
    assert label(client, ls["id"], "0", "billing").status_code == 201
    assert client.post(f"{API}/{ls['id']}/skip", json={"item_id": "1"},
                       headers=token("tok-scientist")).status_code == 200
    r = client.get(f"{API}/{ls['id']}/next?n=5", headers=token("tok-scientist"))
    assert [i["id"] for i in r.json()["items"]] == ["2"]
    history = client.get(f"{API}/{ls['id']}/annotations?include_undone=true",
                         headers=token("tok-scientist")).json()["annotations"]
    assert [(a["item_id"], a["label"], "undone_at" in a) for a in history] == [
        ("0", "bug", True), ("0", "billing", False)]


def test_next_leases_items_so_k_people_never_overfill_one(client):
    ls = new_set(client, k=1, share={"users": ["lea"]})
    add(client, ls["id"], [{"id": str(n), "text": f"t{n}"} for n in range(4)])
    sam = client.get(f"{API}/{ls['id']}/next?n=2", headers=token("tok-scientist")).json()["items"]
    lea = client.get(f"{API}/{ls['id']}/next?n=3", headers=token("tok-labeler")).json()["items"]
    assert [i["id"] for i in sam] == ["0", "1"] and [i["id"] for i in lea] == ["2", "3"]
    # Asking again gives the same leased items (a reload shows the same item).
    again = client.get(f"{API}/{ls['id']}/next?n=2", headers=token("tok-scientist")).json()["items"]
    assert [i["id"] for i in again] == ["0", "1"]
    r = label(client, ls["id"], "0", "bug", who="tok-labeler")
    assert r.status_code == 409 and "already has its 1 label" in r.json()["message"]


def test_multi_label_sets_take_lists(client):
    ls = new_set(client, name="tags", task="multi")
    add(client, ls["id"], [{"id": "1", "text": "x"}])
    r = label(client, ls["id"], "1", ["feature", "bug"])
    assert r.status_code == 201 and r.json()["label"] == ["bug", "feature"]


def test_snapshots_are_versioned_frozen_and_only_new_when_labels_change(client):
    ls = new_set(client, k=2, share={"users": ["lea"]})
    add(client, ls["id"], [{"id": "1", "text": "a"}, {"id": "2", "text": "b"}])
    label(client, ls["id"], "1", "bug")
    label(client, ls["id"], "1", "billing", who="tok-labeler")
    label(client, ls["id"], "2", "feature")
    h = token("tok-scientist")
    v1 = client.post(f"{API}/{ls['id']}/snapshots", headers=h)
    assert v1.status_code == 201 and v1.json()["version"] == 1
    same = client.post(f"{API}/{ls['id']}/snapshots", headers=h)
    assert same.status_code == 200 and same.json()["sha256"] == v1.json()["sha256"]
    r = client.post(f"{API}/{ls['id']}/items/1/adjudicate", json={"label": "billing"}, headers=h)
    assert r.status_code == 200
    v2 = client.post(f"{API}/{ls['id']}/snapshots", headers=h).json()
    assert v2["version"] == 2 and v2["sha256"] != v1.json()["sha256"]
    rows1 = client.get(f"{API}/{ls['id']}/snapshots/1", headers=h).json()["rows"]
    rows2 = client.get(f"{API}/{ls['id']}/snapshots/2", headers=h).json()["rows"]
    assert [(r["item_id"], r["label"], r["n_labels"]) for r in rows1] == [("1", None, 2), ("2", "feature", 1)]
    assert rows2[0]["label"] == "billing" and rows2[0]["adjudicated"] and rows2[0]["agreement"] == 0.5


def test_the_labeling_page_has_its_own_csp_and_the_xsrf_token_of_the_session(client):
    ls = new_set(client, share={"users": ["lea"]})
    page = client.get(f"{PREFIX}/label/{ls['id']}", headers={**cookie("tok-labeler"), "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 200, page.text
    assert page.headers["content-security-policy"] == labels_api.PAGE_CSP
    assert xsrf_token(SECRET, "tok-labeler") in page.text and "tickets" in page.text
    index = client.get(f"{PREFIX}/label/", headers={**cookie("tok-labeler"), "Sec-Fetch-Mode": "navigate"})
    assert index.status_code == 200 and f"{ls['id']}" in index.text
    # Its script is public (no data), like a static file; API answers stay sandboxed.
    js = client.get(f"{PREFIX}/static/label/labeler.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    api = client.get(f"{API}/{ls['id']}", headers=token("tok-labeler"))
    assert api.headers["content-security-policy"].startswith("sandbox")
    # The page's fetch() calls need the XSRF token with the cookie.
    r = client.get(f"{API}/{ls['id']}/next", headers={**cookie("tok-labeler"), **SAME_ORIGIN_FETCH})
    assert r.status_code == 403 and "X-XSRFToken" in r.json()["message"]
    r = client.get(f"{API}/{ls['id']}/next", headers={**cookie("tok-labeler"), **SAME_ORIGIN_FETCH,
                                                     "X-XSRFToken": xsrf_token(SECRET, "tok-labeler")})
    assert r.status_code == 204
