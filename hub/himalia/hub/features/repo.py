"""The platform's one Feast repository: its configuration, built from the platform's.

The registry is Feast's SQL registry in the API database (its tables sit beside himalia's);
the online store is SQLite under the state directory or Redis; Feast's offline store (DuckDB
by default) is whatever the configuration names. Only the platform API writes the registry and
the online store; people's kernels read the online store directly when they can (Redis, or the
SQLite file when the platform runs as their own account) and through the API otherwise.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

PROJECT = "himalia"
#: Feast 0.67's entity key format (the only one it writes).
ENTITY_KEY_SERIALIZATION_VERSION = 3


def redis_connection_string(url: str) -> str:
    """``redis://[:password@]host:port/db`` -> Feast's ``host:port,db=N[,password=...]``."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"feature_online_store {url!r}: use 'sqlite' or a redis://host:port/db URL")
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"]
    db = (parsed.path or "/0").strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"feature_online_store {url!r}: the path is a database number, e.g. /0")
    parts.append(f"db={db}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    for key, values in parse_qs(parsed.query).items():
        parts.append(f"{key}={values[-1]}")
    return ",".join(parts)


def online_config(setting: str, root: Path) -> dict:
    """The online store as plain data, for the API and for readers (``himalia.features.online``)."""
    if not setting or setting == "sqlite":
        return {"type": "sqlite", "path": str(root / "online.db")}
    return {"type": "redis", "connection_string": redis_connection_string(setting)}


#: What Feast's metrics module puts in the environment when it is imported (a private temporary
#: folder for prometheus_client): every child process would inherit it, and one running as
#: another account fails on it.
FEAST_METRICS_VARIABLES = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")


def contain_feast_metrics() -> None:
    """Keep Feast's metrics folder to this process: take the variables its import set out of
    the environment (Feast keeps the folder's name itself)."""
    metrics = sys.modules.get("feast.metrics")
    if metrics is None or not getattr(metrics, "_owns_mp_dir", False):
        return
    for name in FEAST_METRICS_VARIABLES:
        if os.environ.get(name) == getattr(metrics, "_prometheus_mp_dir", None):
            os.environ.pop(name)


@dataclass
class FeatureSettings:
    """What the API needs for the feature store (``HIMALIA_FEATURES``, JSON, from ``himalia up``)."""

    root: Path
    registry_url: str
    online: dict
    offline: dict = field(default_factory=lambda: {"type": "duckdb"})
    #: Where people's files are: their Unix account's home with system users, else
    #: ``<state>/users/<name>``.
    system_users: bool = False
    user_prefix: str = "jupyter-"
    users_root: str = ""
    project: str = PROJECT

    def to_json(self) -> dict:
        return {"root": str(self.root), "registry_url": self.registry_url, "online": self.online,
                "offline": self.offline, "system_users": self.system_users,
                "user_prefix": self.user_prefix, "users_root": self.users_root,
                "project": self.project}

    @classmethod
    def from_json(cls, data: dict) -> "FeatureSettings":
        data = dict(data)
        data["root"] = Path(data["root"])
        return cls(**data)


class FeatureRepo:
    """Feast's ``FeatureStore`` for the platform, made on first use (importing Feast takes a
    few seconds, so the API warms it in a thread at start)."""

    def __init__(self, settings: FeatureSettings):
        self.settings = settings
        self._store = None
        self._reader = None
        self._patient = False
        self._lock = threading.Lock()
        #: Held while definitions change, so a plan and its apply see the same registry.
        self.write_lock = threading.Lock()

    @property
    def project(self) -> str:
        return self.settings.project

    def repo_config(self) -> Any:
        from feast import RepoConfig
        from feast.infra.registry.sql import SqlRegistryConfig

        s = self.settings
        online = dict(s.online)
        engine = {"echo": False, "pool_pre_ping": True}
        if s.registry_url.startswith("sqlite"):
            # The API writes the same SQLite file (audit log, statistics): wait for its lock as
            # the API's own engine does, not sqlite3's default 5 s.
            engine["connect_args"] = {"timeout": 30}
        return RepoConfig(
            project=s.project,
            provider="local",
            registry=SqlRegistryConfig(registry_type="sql", path=s.registry_url,
                                       cache_ttl_seconds=0,
                                       sqlalchemy_config_kwargs=engine),
            online_store=online,
            offline_store=dict(s.offline),
            entity_key_serialization_version=ENTITY_KEY_SERIALIZATION_VERSION,
            repo_path=str(s.root),
        )

    @property
    def store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from feast import FeatureStore

                    self.settings.root.mkdir(parents=True, exist_ok=True)
                    store = FeatureStore(config=self.repo_config(), repo_path=str(self.settings.root))
                    # Feast makes its registry (and its tables) on first use, unlocked: make
                    # it here, once, before any other thread can see the store.
                    store.registry
                    contain_feast_metrics()
                    self._store = store
        return self._store

    @property
    def registry(self):
        return self.store.registry

    def provider(self):
        provider = self.store._get_provider()
        if self.settings.online.get("type") == "sqlite" and not self._patient:
            with self._lock:
                if not self._patient:
                    # Feast's one connection to the SQLite online store waits sqlite3's default
                    # 5 s for a lock; a materialization's writes can hold it longer on a busy
                    # machine, and a definition's apply should wait for them, not fail.
                    conn = provider.online_store._get_conn(self.store.config)
                    conn.execute("PRAGMA busy_timeout=30000").fetchall()
                    self._patient = True
        return provider

    def reader(self):
        """The fast online reader (``himalia.features.online``) over this repository's store."""
        if self._reader is None:
            from himalia.features.online import OnlineStore

            self.store  # Feast has made the online store's tables
            with self._lock:
                if self._reader is None:
                    self._reader = OnlineStore.from_config(self.settings.online, self.project,
                                                           ENTITY_KEY_SERIALIZATION_VERSION)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._store is not None:
            for name in ("write_engine", "read_engine"):
                engine = getattr(self._store.registry, name, None)
                if engine is not None:
                    engine.dispose()
            self._store = None
            self._patient = False
