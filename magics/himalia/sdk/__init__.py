"""Python client of the himalia platform API, used by the magics, the CLI and the Lab extension."""

from .client import Client, HimaliaError
from .jobs import Jobs, latest, record

__all__ = ["Client", "HimaliaError", "Jobs", "latest", "record"]
