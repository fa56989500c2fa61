"""The configuration file ``himalia up`` starts JupyterHub with."""

from himalia.hub.hubconfig import configure

configure(get_config())  # noqa: F821 (get_config is provided by JupyterHub's config loader)
