"""What a user's server runs: ``python -m himalia.kernels.singleuser [jupyterhub-singleuser args]``.

First, as the user, in their home: the welcome notebook on the first start, and the user's
own site-packages folder, so that it is on ``sys.path`` of every kernel from the start and a
package installed with ``pip`` is importable at once. Then JupyterHub's single-user server.
A failure to prepare the home is reported and never stops the server.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from .welcome import place_welcome


def prepare_home(home: str | os.PathLike) -> None:
    try:
        place_welcome(home)
    except OSError as e:
        print(f"himalia: could not place the welcome notebook in {home}: {e}", file=sys.stderr)
    if site.ENABLE_USER_SITE:
        try:
            os.makedirs(site.getusersitepackages(), exist_ok=True)
        except OSError as e:
            print(f"himalia: could not create your site-packages folder: {e}", file=sys.stderr)


def main() -> None:
    prepare_home(Path.home())
    # Kernels inherit it: a notebook's path relative to what the server serves (run lineage).
    os.environ.setdefault("HIMALIA_SERVER_ROOT", os.getcwd())
    from jupyterhub.singleuser import main as singleuser

    singleuser()


if __name__ == "__main__":
    main()
