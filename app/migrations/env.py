"""Alembic's environment for the PostgreSQL gallery: online mode only, on a connection handed in by the caller.

`app.store_postgres.migrate` opens a SQLAlchemy connection on the gallery's database URL, takes the migration
advisory lock on it, and passes it in `config.attributes["connection"]` (Alembic's cookbook recipe "Sharing a
Connection across one or more programmatic migration commands"). There is no offline (`--sql`) mode and no
`sqlalchemy.url`: the revisions are raw SQL (`op.execute`), so there is no metadata to autogenerate from either.

Each revision runs in its own transaction, together with its `alembic_version` update (PostgreSQL's DDL is
transactional): a revision that fails leaves neither its tables nor its version behind. When the caller's
connection is already inside a transaction, Alembic runs in that one instead (how `migrate` stamps an adopted
database in the same transaction that drops the old runner's table).
"""

from __future__ import annotations

from alembic import context

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "the gallery's migrations run on a connection passed in by app.store_postgres.migrate, which also "
            "takes the lock that keeps replicas from migrating at once: start the service (or any siamface "
            "command on the database), or call migrate(database_url), rather than `alembic upgrade`"
        )
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the gallery's migrations have no offline (--sql) mode")
run_migrations_online()
