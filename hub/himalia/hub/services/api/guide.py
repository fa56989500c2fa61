"""The platform's documentation (``docs/*.md``), rendered for people at ``/guide/``.

JupyterLab's Help menu ("himalia documentation") opens it; every logged-in role may read it.
The pages come from the installed package (``share/himalia/docs``, or ``docs/`` in a source
checkout) and only their own names are served: nothing outside that folder can be reached.
"""

from __future__ import annotations

import re
import sys
from html import escape
from pathlib import Path

import mistune
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse

from .authz import allow

#: A page name: one optional folder and a markdown file, lower case (``reference/config.md``).
PAGE = re.compile(r"^(?:[a-z0-9][a-z0-9-]*/)?[a-z0-9][a-z0-9-]*\.md$")
STYLE = """
body { font: 15px/1.55 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2328; }
pre, code { font-family: ui-monospace, monospace; background: #f6f8fa; }
pre { padding: .75rem; overflow-x: auto; } table { border-collapse: collapse; }
td, th { border: 1px solid #d0d7de; padding: .25rem .5rem; vertical-align: top; }
nav { margin-bottom: 1.5rem; font-size: 13px; }
"""


def find_docs() -> Path | None:
    """The installed documentation folder, or a source checkout's ``docs/``."""
    candidates = [Path(sys.prefix) / "share" / "himalia" / "docs",
                  Path(__file__).resolve().parents[5] / "docs"]
    return next((c for c in candidates if (c / "index.md").is_file()), None)


def render(markdown_text: str, title: str, index_url: str) -> str:
    body = mistune.html(markdown_text)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · himalia"
            f"</title><style>{STYLE}</style></head><body><nav><a href='{index_url}'>himalia "
            f"documentation</a></nav>{body}</body></html>")


def make_router(prefix: str, docs: Path | None) -> APIRouter:
    """``GET {prefix}/guide/`` and ``GET {prefix}/guide/<page>.md`` for any platform role."""
    router = APIRouter(prefix=prefix, dependencies=[Depends(allow())])
    index_url = f"{prefix}/guide/"

    def page(name: str) -> HTMLResponse:
        if docs is None:
            raise HTTPException(404, "The documentation is not installed with this platform.")
        path = (docs / name).resolve()
        if not PAGE.match(name) or not path.is_relative_to(docs.resolve()) or not path.is_file():
            raise HTTPException(404, f"No documentation page {name!r}; start at {index_url}.")
        text = path.read_text(encoding="utf-8")
        title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
                     name)
        return HTMLResponse(render(text, title, index_url))

    @router.get("/guide/", summary="The platform's documentation (HTML)", response_class=HTMLResponse)
    async def guide_index() -> HTMLResponse:
        return page("index.md")

    @router.get("/guide/{name:path}", summary="One page of the documentation (HTML)",
                response_class=HTMLResponse)
    async def guide_page(name: str) -> HTMLResponse:
        return page(name)

    return router
