"""The documentation at /services/himalia/guide/: rendered pages, for logged-in roles only,
and nothing outside the documentation folder."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from himalia.hub.services.api import guide


@pytest.fixture
def docs(tmp_path):
    root = tmp_path / "docs"
    (root / "reference").mkdir(parents=True)
    (root / "index.md").write_text("# himalia documentation\n\n- [Quickstart](quickstart.md)\n")
    (root / "quickstart.md").write_text("# Quickstart\n\nRun `himalia up`.\n")
    (root / "reference" / "config.md").write_text("# Reference\n")
    (tmp_path / "secret.md").write_text("# outside\n")
    return root


def client(docs, monkeypatch, roles=("scientist",)) -> TestClient:
    from himalia.hub.services.api import authz
    from himalia.hub.services.api.identity import Identity

    async def who():
        return Identity(name="ada", kind="user", roles=list(roles))

    app = FastAPI()
    app.include_router(guide.make_router("/services/himalia", docs))
    app.dependency_overrides[authz.current_identity] = who
    return TestClient(app)


def test_pages_render_with_their_links(docs, monkeypatch):
    c = client(docs, monkeypatch)
    index = c.get("/services/himalia/guide/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "<h1>himalia documentation</h1>" in index.text
    assert '<a href="quickstart.md">Quickstart</a>' in index.text
    page = c.get("/services/himalia/guide/quickstart.md")
    assert "<code>himalia up</code>" in page.text and "<title>Quickstart · himalia</title>" in page.text
    assert c.get("/services/himalia/guide/reference/config.md").status_code == 200


@pytest.mark.parametrize("name", ["../secret.md", "..%2Fsecret.md", "reference/../../secret.md",
                                  "missing.md", "index.py", "Index.md"])
def test_nothing_outside_the_documentation_is_served(docs, monkeypatch, name):
    r = client(docs, monkeypatch).get(f"/services/himalia/guide/{name}")
    assert r.status_code == 404
    assert "outside" not in r.text


def test_a_caller_without_a_role_is_refused(docs, monkeypatch):
    assert client(docs, monkeypatch, roles=()).get("/services/himalia/guide/").status_code == 403


def test_the_shipped_documentation_is_found():
    found = guide.find_docs()
    assert found is not None and (found / "quickstart.md").is_file()
