"""``%himalia``: who am I, with which role, and is the platform healthy."""

from __future__ import annotations

from html import escape

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, HimaliaError

from .base import HimaliaMagics, himalia_magics


def render_text(me: dict, health: dict, magics: list[tuple[str, str]] = ()) -> str:
    roles = ", ".join(me.get("roles") or []) or "none"
    lines = [f"user: {me['name']}", f"role: {roles}",
             f"platform: {'healthy' if health.get('ok') else 'DEGRADED'}"]
    for name, part in sorted((health.get("services") or {}).items()):
        lines.append(f"  {'ok  ' if part['ok'] else 'DOWN'} {name}  {part.get('detail', '')}".rstrip())
    if magics:
        lines.append("magics (each answers --help):")
        lines += [f"  {name:<12} {summary}".rstrip() for name, summary in magics]
    return "\n".join(lines)


def render_html(me: dict, health: dict, magics: list[tuple[str, str]] = ()) -> str:
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{'✅' if part['ok'] else '❌'}</td>"
        f"<td>{escape(part.get('detail', ''))}</td></tr>"
        for name, part in sorted((health.get("services") or {}).items())
    )
    roles = escape(", ".join(me.get("roles") or []) or "none")
    listed = "".join(f"<li><code>{escape(name)}</code> {escape(summary)}</li>" for name, summary in magics)
    return (f"<div class='himalia-status'><b>{escape(me['name'])}</b> · role: {roles}"
            f"<table>{rows}</table>"
            + (f"<p>Magics (each answers <code>--help</code>):</p><ul>{listed}</ul>" if listed else "")
            + "</div>")


@magics_class
class PlatformMagics(HimaliaMagics):
    """Platform-wide magics; configurable as ``c.PlatformMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    @magic_arguments()
    @argument("--json", action="store_true", help="return the raw data instead of printing it")
    @line_magic
    def himalia(self, line: str = ""):
        """Who you are, your platform role, the platform's health and the magics you can use."""
        args = self.parse(self.himalia, line)
        if args is None:
            return None
        try:
            client = self.client_factory()
            me = client.whoami()
            health = client.health()
        except HimaliaError as e:
            raise UsageError(f"himalia: {e}") from None
        magics = himalia_magics(self.shell)
        if args.json:
            return {"whoami": me, "health": health, "magics": dict(magics)}
        display(
            {"text/plain": render_text(me, health, magics),
             "text/html": render_html(me, health, magics)},
            raw=True,
        )
