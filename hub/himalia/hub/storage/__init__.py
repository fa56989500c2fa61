"""Storage of the platform API: SQLAlchemy models and Alembic migrations.

SQLite in the state directory by default, PostgreSQL by URL. Every table carries the
``himalia_`` prefix so the API may share a database with the hub.
"""

from .db import Database, upgrade, current_revision, head_revision
from .models import AuditEvent, Base

__all__ = ["AuditEvent", "Base", "Database", "current_revision", "head_revision", "upgrade"]
