"""The store's migrations as they were before the server's tables moved out of them (commit
db510d1, revisions 0001-0005 verbatim): what every database made by tracklet until then looks
like. tests/test_server_schema.py builds such a database and opens it with today's code."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
