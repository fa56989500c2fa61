"""What every himalia magic shares: ``-h``/``--help``, argument errors as ``UsageError``, and
the list of himalia magics that ``%himalia`` shows."""

from __future__ import annotations

import argparse
import shlex
from html import escape

from IPython.core.error import UsageError
from IPython.core.magic import Magics

HELP_FLAGS = {"-h", "--help"}


def wants_help(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return bool(HELP_FLAGS & set(words))


class HimaliaMagics(Magics):
    """Base of himalia's magics: ``self.parse(self.magic, line)`` instead of ``parse_argstring``,
    and ``self._cell``, the cell being run as it was typed (for lineage: its hash), whether or
    not the front end keeps it in the history."""

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._cell = ""
        if shell is not None:
            shell.events.register("pre_run_cell", self._remember_cell)

    def _remember_cell(self, info) -> None:
        self._cell = info.raw_cell or ""

    def parse(self, magic_func, line: str) -> argparse.Namespace | None:
        """The parsed arguments, or None after printing the help for ``-h``/``--help``.

        The line is split as a POSIX shell splits it (IPython's own splitting keeps quotes:
        ``--cron '0 2 * * *'`` would arrive quoted, and ``--param label='a b'`` as two words).
        """
        name = magic_func.__name__
        if wants_help(line):
            print(magic_func.parser.format_help().rstrip())
            return None
        try:
            return magic_func.parser.parse_args(shlex.split(line))
        except (UsageError, ValueError) as e:
            raise UsageError(f"%{name}: {e} (see %{name} --help)") from None


def himalia_magics(shell) -> list[tuple[str, str]]:
    """``("%name", first line of its help)`` for every magic a himalia class registered."""
    found = []
    for kind, prefix in (("line", "%"), ("cell", "%%")):
        for name, func in sorted(shell.magics_manager.magics[kind].items()):
            owner = getattr(func, "__self__", None)
            if isinstance(owner, Magics) and type(owner).__module__.startswith("himalia."):
                doc = (func.__doc__ or "").strip().splitlines()
                found.append((prefix + name, doc[0] if doc else ""))
    return found


def _text_table(headers: list[str], rows: list[list]) -> str:
    cells = [[h.upper() for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _html_table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(title: str, headers: list[str], rows: list[list]) -> dict:
    """A titled table as plain text and HTML, for ``display(..., raw=True)``."""
    return {"text/plain": f"{title}\n{_text_table(headers, rows)}",
            "text/html": f"<div class='himalia-table'><p>{escape(title)}</p>"
                         f"{_html_table(headers, rows)}</div>"}
