"""Python client of the himalia platform API, used by the magics, the CLI and the Lab extension."""

from .client import Client, HimaliaError
from .clusters import Clusters, cluster
from .dashboards import Dashboards
from .deployments import Deployments, batch_job, batch_predict
from .jobs import Jobs, latest, record

__all__ = ["Client", "Clusters", "cluster", "Dashboards", "Deployments", "HimaliaError", "Jobs", "batch_job",
           "batch_predict", "latest", "record"]
