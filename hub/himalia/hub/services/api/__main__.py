"""Entry point the hub runs as the managed service ``himalia``.

The environment is read here, once: JupyterHub sets the ``JUPYTERHUB_*`` variables of a
managed service; ``himalia up`` adds the database URL and the public proxy URL.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import uvicorn

from .app import APISettings, create_app


def main() -> None:
    env = os.environ
    settings = APISettings(
        prefix=env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/himalia/"),
        hub_api_url=env["JUPYTERHUB_API_URL"],
        api_token=env["JUPYTERHUB_API_TOKEN"],
        proxy_url=env["HIMALIA_PROXY_URL"],
        db_url=env["HIMALIA_API_DB_URL"],
        oauth_client_id=env.get("JUPYTERHUB_CLIENT_ID", ""),
        oauth_redirect_uri=env.get("JUPYTERHUB_OAUTH_CALLBACK_URL", ""),
    )
    bind = urlparse(env["JUPYTERHUB_SERVICE_URL"])
    uvicorn.run(
        create_app(settings),
        host=bind.hostname or "127.0.0.1",
        port=bind.port or 10101,
        log_level=env.get("HIMALIA_LOG_LEVEL", "info"),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
