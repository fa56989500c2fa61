"""Alembic environment of the platform API database."""

from alembic import context
from sqlalchemy import create_engine, pool

from himalia.hub.storage.models import Base
import himalia.hub.jobs.models  # noqa: F401  (its tables join Base.metadata)
import himalia.hub.deployments.models  # noqa: F401
import himalia.hub.features.models  # noqa: F401
import himalia.hub.labels.models  # noqa: F401
import himalia.hub.dashboards.models  # noqa: F401

config = context.config
version_table = config.attributes.get("version_table", "himalia_alembic_version")


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=version_table,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
