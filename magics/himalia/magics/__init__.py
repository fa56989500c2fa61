"""IPython magics of the himalia platform; ``%load_ext himalia.magics`` (the himalia kernel loads it)."""

from .clusters import ClusterMagics
from .dashboards import DashboardMagics
from .deployments import DeployMagics
from .features import FeatureMagics
from .jobs import JobMagics
from .labels import LabelMagics
from .packages import PackageMagics
from .platform import PlatformMagics
from .tracking import TrackingMagics


def load_ipython_extension(ipython):
    ipython.register_magics(PlatformMagics)
    ipython.register_magics(PackageMagics)
    ipython.register_magics(TrackingMagics)
    ipython.register_magics(JobMagics)
    ipython.register_magics(DeployMagics)
    ipython.register_magics(FeatureMagics)
    ipython.register_magics(LabelMagics)
    ipython.register_magics(DashboardMagics)
    ipython.register_magics(ClusterMagics)


__all__ = ["ClusterMagics", "DashboardMagics", "DeployMagics", "FeatureMagics", "JobMagics", "LabelMagics", "PlatformMagics", "TrackingMagics", "load_ipython_extension"]
