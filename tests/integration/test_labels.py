"""Label sets on the real platform (hub, proxy, the platform API on SQLite and on PostgreSQL):
the contract that outside checks use, concurrent annotators with k=2, and what the ``labeler``
role reaches (its label sets, the labeling page) and what it does not (servers, other APIs,
MLflow, sets not shared with it)."""

from __future__ import annotations

import collections
import threading

import pytest
import requests

from himalia_testing import Person

pytestmark = pytest.mark.timeout(600)
CLASSES = ["billing", "bug", "feature"]


@pytest.fixture(scope="module")
def people(platform, unique_name_module):
    group = unique_name_module("lg")
    found = {
        "ada": Person(platform, unique_name_module("la"), "scientist"),
        "ben": Person(platform, unique_name_module("lb"), "scientist"),
        "lea": Person(platform, unique_name_module("ll"), "labeler"),
        "leo": Person(platform, unique_name_module("lo"), "labeler"),
        "val": Person(platform, unique_name_module("lv"), "viewer"),
    }
    r = platform.api("POST", f"/groups/{group}")
    assert r.status_code == 201, r.text
    r = platform.api("POST", f"/groups/{group}/users", json={"users": [found["leo"].name]})
    assert r.status_code == 200, r.text
    found["group"] = group
    return found


def test_the_contract_through_the_hub(people):
    ada, lea, leo = people["ada"], people["lea"], people["leo"]
    ls = ada.ok("POST", "/labelsets", 201, json={"name": "tickets", "classes": CLASSES, "k": 2,
                                                  "task": "single"})
    set_id = ls["id"]
    ada.ok("POST", f"/labelsets/{set_id}/items", 201,
           json=[{"id": "a", "text": "charged twice"}, {"id": "b", "text": "crash on save"},
                 {"id": "c", "row": {"plan": "pro", "seats": 3}}])
    shared = ada.ok("POST", f"/labelsets/{set_id}/share",
                    json={"users": [lea.name], "groups": [people["group"]]})
    assert shared["shared_users"] == [lea.name] and shared["shared_groups"] == [people["group"]]
    # The group's member reaches it through the hub's group membership.
    for person, answers in ((lea, {"a": "billing", "b": "bug", "c": "feature"}),
                            (leo, {"a": "billing", "b": "feature", "c": "feature"})):
        while True:
            r = person.call("GET", f"/labelsets/{set_id}/next")
            if r.status_code == 204:
                break
            item = r.json()["item"]
            person.ok("POST", f"/labelsets/{set_id}/annotations", 201,
                      json={"item_id": item["id"], "label": answers[item["id"]]})
    # k=2 reached by the two of them: nothing is left for the owner.
    assert ada.call("GET", f"/labelsets/{set_id}/next").status_code == 204
    stored = ada.ok("GET", f"/labelsets/{set_id}/annotations")["annotations"]
    assert sorted((a["item_id"], a["user"], a["label"]) for a in stored) == sorted(
        [("a", lea.name, "billing"), ("b", lea.name, "bug"), ("c", lea.name, "feature"),
         ("a", leo.name, "billing"), ("b", leo.name, "feature"), ("c", leo.name, "feature")])
    agreement = ada.ok("GET", f"/labelsets/{set_id}/agreement")
    # Hand-computed: p_o = 2/3; lea (billing, bug, feature), leo (billing, feature, feature):
    # p_e = 1/3*1/3 + 1/3*0 + 1/3*2/3 = 1/3; kappa = (2/3 - 1/3) / (2/3) = 0.5.
    assert agreement["method"] == "cohen" and agreement["kappa"] == pytest.approx(0.5)
    assert set(agreement["per_class"]) == set(CLASSES)


def test_two_annotators_at_once_with_k2_never_overfill_or_repeat(people):
    ada, ben, lea = people["ada"], people["ben"], people["lea"]
    ls = ada.ok("POST", "/labelsets", 201, json={"name": "race", "classes": CLASSES, "k": 2,
                                                  "share": {"users": [ben.name, lea.name]}})
    set_id, n_items = ls["id"], 60
    ada.ok("POST", f"/labelsets/{set_id}/items", 201,
           json=[{"id": str(n), "text": f"ticket {n}"} for n in range(n_items)])
    seen: dict[str, list[str]] = collections.defaultdict(list)
    errors: list[str] = []
    start = threading.Barrier(3)

    def annotate(person: Person) -> None:
        start.wait()
        with requests.Session() as http:
            http.headers.update(person.headers)
            base = f"{person.platform.url}/services/himalia/api/v1/labelsets/{set_id}"
            while True:
                r = http.get(f"{base}/next", params={"n": 2}, timeout=60)
                if r.status_code == 204:
                    return
                for item in r.json()["items"]:
                    seen[person.name].append(item["id"])
                    a = http.post(f"{base}/annotations", json={"item_id": item["id"], "label": "bug"},
                                  timeout=60)
                    if a.status_code not in (200, 201):
                        errors.append(f"{person.name} {item['id']}: {a.status_code} {a.text}")

    threads = [threading.Thread(target=annotate, args=(p,)) for p in (ada, ben, lea)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    labels = ada.ok("GET", f"/labelsets/{set_id}/annotations")["annotations"]
    per_item = collections.defaultdict(list)
    for a in labels:
        per_item[a["item_id"]].append(a["user"])
    assert len(per_item) == n_items and all(len(users) == 2 for users in per_item.values())
    assert all(len(set(users)) == 2 for users in per_item.values()), "an item got two labels from one person"
    for name, items in seen.items():
        assert len(items) == len(set(items)), f"{name} was given an item twice"
    assert sum(len(v) for v in seen.values()) == 2 * n_items
    progress = ada.ok("GET", f"/labelsets/{set_id}")["progress"]
    assert progress["done"] == n_items and progress["labels"] == 2 * n_items


def test_a_labeler_reaches_its_sets_and_nothing_else(platform, people):
    ada, lea, val = people["ada"], people["lea"], people["val"]
    ls = ada.ok("POST", "/labelsets", 201, json={"name": "only-mine", "classes": ["x", "y"]})
    # Not shared: not even revealed.
    assert lea.call("GET", f"/labelsets/{ls['id']}").status_code == 404
    assert ls["id"] not in [s["id"] for s in lea.ok("GET", "/labelsets")["labelsets"]]
    # No other platform API.
    for method, path in [("GET", "/whoami"), ("GET", "/health"), ("GET", "/jobs"),
                         ("GET", "/deployments"), ("GET", "/features"), ("POST", "/labelsets")]:
        r = lea.call(method, path, json={"name": "z", "classes": ["a"]})
        assert r.status_code == 403, (path, r.status_code, r.text)
    # No server of their own, no MLflow.
    r = requests.post(f"{platform.url}/hub/api/users/{lea.name}/server", headers=lea.headers, timeout=30)
    assert r.status_code == 403, r.text
    r = requests.get(f"{platform.url}/services/mlflow/api/2.0/mlflow/experiments/search",
                     headers=lea.headers, params={"max_results": 1}, timeout=30)
    assert r.status_code in (401, 403), r.text
    # The labeling page lists what is shared with them.
    ada.ok("POST", f"/labelsets/{ls['id']}/share", json={"users": [lea.name]})
    page = requests.get(f"{platform.url}/services/himalia/label/", headers=lea.headers, timeout=30)
    assert page.status_code == 200 and "only-mine" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    # A viewer has no labeling at all.
    assert val.call("GET", "/labelsets").status_code == 403
    assert requests.get(f"{platform.url}/services/himalia/label/", headers=val.headers,
                        timeout=30).status_code == 403
    # Nor does another scientist reach a set not shared with them.
    assert people["ben"].call("GET", f"/labelsets/{ls['id']}/next").status_code == 404


def test_bad_input_is_refused_and_nothing_is_half_written(people):
    ada, lea = people["ada"], people["lea"]
    ls = ada.ok("POST", "/labelsets", 201, json={"name": "strict", "classes": ["a", "b"], "k": 1})
    r = ada.call("POST", f"/labelsets/{ls['id']}/items",
                 json=[{"id": "1", "text": "fine"}, {"id": "2", "image": "aGVsbG8="}])
    assert r.status_code == 400 and "cannot be decoded" in r.json()["message"]
    assert ada.ok("GET", f"/labelsets/{ls['id']}/items")["total"] == 0
    r = ada.call("PATCH", f"/labelsets/{ls['id']}", json={"k": 2})
    assert r.status_code == 400 and "share it with 1 more" in r.json()["message"]
    r = ada.call("POST", f"/labelsets/{ls['id']}/share", json={"groups": ["no-such-group-x"]})
    assert r.status_code == 404 and "no-such-group-x" in r.json()["message"]
    ada.ok("POST", f"/labelsets/{ls['id']}/items", 201, json=[{"id": "1", "text": "fine"}])
    r = ada.call("POST", f"/labelsets/{ls['id']}/annotations", json={"item_id": "1", "label": "c"})
    assert r.status_code == 400 and "a, b" in r.json()["message"]
    assert lea.call("POST", f"/labelsets/{ls['id']}/annotations",
                    json={"item_id": "1", "label": "a"}).status_code == 404
