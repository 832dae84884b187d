"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence
${imports if imports else ""}
revision: str = ${repr(up_revision).replace("'", '"')}
down_revision: str | Sequence[str] | None = ${repr(down_revision).replace("'", '"')}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels).replace("'", '"')}
depends_on: str | Sequence[str] | None = ${repr(depends_on).replace("'", '"')}


def upgrade() -> None:
    # Raw SQL, as in 0001_gallery.py: `from alembic import op` above, then op.execute("ALTER TABLE ...").
    raise NotImplementedError("revision ${up_revision} has no SQL yet")


def downgrade() -> None:
    pass
