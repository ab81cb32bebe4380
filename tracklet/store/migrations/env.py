"""Alembic environment: always run programmatically by ``tracklet.store.engine`` with an open
connection in ``config.attributes["connection"]``."""

from alembic import context

from tracklet.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
