"""``%publish``: this notebook as a dashboard for business viewers.

``%publish NAME [--title T] [--job JOB] [--share-users a,b] [--share-groups g] [--viewers]``
publishes the current notebook as saved (``--notebook PATH``: another one) and shows its link;
publishing your own NAME again makes its next version. ``%publish --list`` lists the dashboards
you may open, ``%publish --unpublish NAME`` stops serving one. The rules are the platform's,
through :class:`himalia.sdk.Dashboards`; this module parses and shows.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Mapping

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, Dashboards, HimaliaError
from himalia.sdk.dashboards import audience, freshness

from .base import HimaliaMagics, render
from .jobs import api_message
from .labels import _words


def local_notebook(path: str | None, env: Mapping[str, str], cwd: Path | None = None) -> Path:
    """The notebook file to publish: ``path`` as given (absolute, or from the kernel's folder,
    else from the server's root as JupyterLab's "Copy Path" gives it), or without it the
    kernel's own notebook. ``UsageError`` when there is none."""
    root = Path(env.get("HIMALIA_SERVER_ROOT") or env.get("HOME") or ".")
    cwd = cwd or Path.cwd()
    if path is None:
        session = env.get("JPY_SESSION_NAME", "")
        if not session:
            raise UsageError("%publish: this kernel does not know its notebook (no "
                             "JPY_SESSION_NAME): give it with --notebook PATH")
        candidates = [root / session]
    else:
        given = Path(path).expanduser()
        candidates = [cwd / given, root / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"%publish: no notebook at {candidates[-1]}"
                     + (" (save it first)" if path is None else ""))


def render_link(dashboard: dict) -> dict:
    """The published dashboard as text and as an HTML link, for ``display(..., raw=True)``."""
    title = dashboard.get("title") or dashboard["name"]
    facts = (f"version {dashboard['version']} · {freshness(dashboard)} · shared with "
             f"{audience(dashboard.get('share') or {})}")
    return {"text/plain": f"Dashboard {dashboard['name']!r} ({title}) at {dashboard['url']}\n{facts}",
            "text/html": f"<div class='himalia-dashboard'><a href='{escape(dashboard['url'])}' "
                         f"target='_blank' rel='noopener'>{escape(title)}</a> "
                         f"<code>{escape(dashboard['name'])}</code><br><small>{escape(facts)}"
                         "</small></div>"}


@magics_class
class DashboardMagics(HimaliaMagics):
    """Dashboards; configurable as ``c.DashboardMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    def _dashboards(self) -> Dashboards:
        try:
            return Dashboards(self.client_factory())
        except HimaliaError as e:
            raise UsageError(f"%publish: {e}") from None

    @magic_arguments()
    @argument("name", nargs="?", help="the dashboard's name: lowercase letters, digits and '-'")
    @argument("--notebook", metavar="PATH", help="the notebook to publish (default: this one, as saved)")
    @argument("--title", help="what the gallery calls it (default: its name)")
    @argument("--description", help="a line about it for the gallery")
    @argument("--job", help="the job (id or name) whose latest outputs it shows")
    @argument("--share-users", metavar="USERS", help="people who may open it, comma-separated")
    @argument("--share-groups", metavar="GROUPS", help="hub groups who may open it, comma-separated")
    @argument("--viewers", action="store_true", help="everyone with the viewer role may open it")
    @argument("--list", action="store_true", help="list the dashboards you may open")
    @argument("--unpublish", metavar="NAME", help="stop serving your dashboard NAME")
    @line_magic
    def publish(self, line: str = ""):
        """Publish this notebook as a dashboard: %publish NAME [--job JOB] [--viewers]; --list; --unpublish NAME."""
        args = self.parse(self.publish, line)
        if args is None:
            return None
        chosen = [flag for flag, on in (("--list", args.list), ("--unpublish", args.unpublish),
                                        ("NAME", args.name)) if on]
        if len(chosen) != 1:
            raise UsageError("%publish: give NAME to publish, or --list, or --unpublish NAME "
                             "(one of them)")
        try:
            if args.list:
                return self._list()
            if args.unpublish:
                self._dashboards().unpublish(args.unpublish)
                print(f"Dashboard {args.unpublish!r} is unpublished: its link no longer opens.")
                return None
            return self._publish(args)
        except HimaliaError as e:
            raise UsageError(f"%publish: {api_message(e)}") from None

    def _publish(self, args):
        notebook = local_notebook(args.notebook, os.environ)
        sharing = args.share_users is not None or args.share_groups is not None or args.viewers
        dashboard = self._dashboards().publish(
            args.name, notebook, title=args.title, description=args.description, job=args.job,
            share_users=_words(args.share_users) if sharing else None,
            share_groups=_words(args.share_groups) if sharing else None,
            viewers=True if args.viewers else (False if sharing else None))
        display(render_link(dashboard), raw=True)
        return None

    def _list(self):
        found = self._dashboards().list()
        if not found:
            print("No dashboards yet: %publish NAME publishes this notebook as one.")
            return None
        rows = [[d["name"], d.get("title") or "", d["owner"], d["version"], d["views"],
                 freshness(d), d["url"]] for d in found]
        display(render("Dashboards", ["name", "title", "owner", "version", "views", "data",
                                      "link"], rows), raw=True)
        return None
