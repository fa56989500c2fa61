"""``%himalia``: who am I, with which role, and is the platform healthy."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, HimaliaError


def render_text(me: dict, health: dict) -> str:
    roles = ", ".join(me.get("roles") or []) or "none"
    lines = [f"user: {me['name']}", f"role: {roles}",
             f"platform: {'healthy' if health.get('ok') else 'DEGRADED'}"]
    for name, part in sorted((health.get("services") or {}).items()):
        lines.append(f"  {'ok  ' if part['ok'] else 'DOWN'} {name}  {part.get('detail', '')}")
    return "\n".join(lines)


def render_html(me: dict, health: dict) -> str:
    from html import escape

    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{'✅' if part['ok'] else '❌'}</td>"
        f"<td>{escape(part.get('detail', ''))}</td></tr>"
        for name, part in sorted((health.get("services") or {}).items())
    )
    roles = escape(", ".join(me.get("roles") or []) or "none")
    return (f"<div class='himalia-status'><b>{escape(me['name'])}</b> · role: {roles}"
            f"<table>{rows}</table></div>")


@magics_class
class PlatformMagics(Magics):
    """Platform-wide magics; configurable as ``c.PlatformMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    @magic_arguments()
    @argument("--json", action="store_true", help="return the raw data instead of printing it")
    @line_magic
    def himalia(self, line: str = ""):
        """Show your hub identity, your platform role and the health of the platform's services."""
        args = parse_argstring(self.himalia, line)
        try:
            client = self.client_factory()
            me = client.whoami()
            health = client.health()
        except HimaliaError as e:
            raise UsageError(f"himalia: {e}") from None
        if args.json:
            return {"whoami": me, "health": health}
        display(
            {"text/plain": render_text(me, health), "text/html": render_html(me, health)},
            raw=True,
        )
