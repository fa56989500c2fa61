"""IPython magics of the himalia platform; ``%load_ext himalia.magics`` (the himalia kernel loads it)."""

from .packages import PackageMagics
from .platform import PlatformMagics


def load_ipython_extension(ipython):
    ipython.register_magics(PlatformMagics)
    ipython.register_magics(PackageMagics)


__all__ = ["PlatformMagics", "load_ipython_extension"]
