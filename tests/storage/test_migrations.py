from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.context import Services
from storage.models import Base


def test_migrations_build_exactly_the_models(services: Services) -> None:
    """A model change without its migration fails here, on both databases."""
    with services.db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
