"""Alembic environment of the server's own tables (``tracklet/server/schema.py``): always run
programmatically by ``tracklet.server.schema.migrate`` with an open connection in
``config.attributes["connection"]``. Its revisions are recorded in their own version table, apart
from the store's (``alembic_version``)."""

from alembic import context

from tracklet.server.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
