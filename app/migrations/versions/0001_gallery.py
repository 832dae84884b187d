"""The gallery: subjects, their faces, and the change log that replicas follow.

Revision ID: 0001
Revises:

The schema of step 1 of the numbered-migrations runner that Alembic replaced (`schema_migrations` version 1),
verbatim: a database that runner created is adopted by stamping this revision (`app.store_postgres.migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQL = """
        CREATE TABLE subjects (
            pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_id text NOT NULL UNIQUE,
            name text,
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE faces (
            face_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_pk bigint NOT NULL REFERENCES subjects (pk) ON DELETE CASCADE,
            model_id text NOT NULL,
            dim integer NOT NULL CHECK (dim > 0),
            embedding bytea NOT NULL,  -- dim little-endian float32 values
            box jsonb,
            source text,
            crop bytea,  -- the aligned crop, PNG
            crop_spec text,
            created_at timestamptz NOT NULL,
            CHECK (octet_length(embedding) = 4 * dim)
        );
        CREATE INDEX faces_by_subject ON faces (subject_pk);
        CREATE INDEX faces_by_model ON faces (model_id);
        -- The change log. No foreign key: a row outlives the subject whose deletion it reports. The identity's
        -- default CACHE 1 matters: with a per-session cache, ids would not follow the advisory lock's order.
        CREATE TABLE changes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_pk bigint NOT NULL,
            subject_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('enroll', 'delete_subject', 'delete_face')),
            created_at timestamptz NOT NULL
        );
        """


def upgrade() -> None:
    op.execute(SQL)


def downgrade() -> None:
    op.execute("DROP TABLE changes; DROP TABLE faces; DROP TABLE subjects")
