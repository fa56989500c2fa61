"""``%pip``: pip for this kernel's Python that says where packages went and makes them importable.

In a himalia server, pip installs into the user's own site-packages (``~/.local``; see
docs/user-environment.md), never into the shared environment. After an install this magic
lists what changed and where, and puts the user's site-packages on ``sys.path`` (where Python
would have put it at start) if it was not there yet, so no restart is needed, except for a
package that this kernel had already imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
import site
import sys

from IPython.core.magic import Magics, line_magic, magics_class

Distributions = dict[str, tuple[str, str]]


def installed(paths: list[str] | None = None) -> Distributions:
    """``{name: (version, folder)}`` of the distributions Python finds on ``paths`` (sys.path)."""
    importlib.invalidate_caches()
    found: Distributions = {}
    for dist in importlib.metadata.distributions(path=list(sys.path if paths is None else paths)):
        name = (dist.name or "").lower().replace("_", "-")
        if name and name not in found:  # the first one on the path is the one imported
            found[name] = (dist.version, str(dist.locate_file("")).rstrip("/"))
    return found


def changed(before: Distributions, after: Distributions) -> Distributions:
    return {name: info for name, info in after.items() if before.get(name) != info}


def add_user_site() -> bool:
    """Put the user's site-packages on ``sys.path`` if Python allows it, it exists and is missing.

    It goes before the first site-packages folder (the user's packages shadow shared ones, as
    in a himalia server from the start), and its ``.pth`` files are processed.
    """
    user = site.getusersitepackages()
    if not site.ENABLE_USER_SITE or not os.path.isdir(user) or user in sys.path:
        return False
    site_dirs = set(site.getsitepackages())
    position = next((i for i, entry in enumerate(sys.path) if entry in site_dirs), len(sys.path))
    site.addsitedir(user)  # appends it and what its .pth files name
    sys.path.remove(user)
    sys.path.insert(position, user)
    return True


def _top_level_names(name: str) -> set[str]:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return set()
    names = set()
    for entry in dist.files or []:
        top = entry.parts[0]
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
            continue
        names.add(top.removesuffix(".py"))
    return names


def describe(new: Distributions, user_site: str, imported: set[str]) -> str:
    """What an install changed, for people: which packages, where, and whether to restart."""
    lines = []
    for name, (version, folder) in sorted(new.items()):
        if folder == user_site.rstrip("/"):
            where = (f"your own packages, {folder} (only you see them; the shared "
                     "environment is unchanged)")
        else:
            where = folder
        lines.append(f"Installed {name} {version} into {where}.")
    stale = sorted(name for name in new if _top_level_names(name) & imported)
    if stale:
        lines.append(f"Restart the kernel to use the new {', '.join(stale)}: this kernel had "
                     "already imported the old one.")
    elif new:
        lines.append("Importable now in this kernel, and in your new kernels and jobs.")
    return "\n".join(lines)


@magics_class
class PackageMagics(Magics):
    """``%pip`` for himalia kernels."""

    @line_magic
    def pip(self, line: str = ""):
        """Install packages for yourself (into ~/.local), usable at once: %pip install <package>."""
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        installing = bool(words) and words[0] == "install" and not ({"-h", "--help"} & set(words))
        before = installed() if installing else {}
        python = shlex.quote(sys.executable)
        self.shell.system(f"{python} -m pip {line}")
        if not installing or self.shell.user_ns.get("_exit_code", 0) != 0:
            return
        add_user_site()
        imported = {module.partition(".")[0] for module in sys.modules}
        report = describe(changed(before, installed()), site.getusersitepackages(), imported)
        if report:
            print(report)
