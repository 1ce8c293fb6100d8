"""the console: its session-signing secret, and an index for its overview

`console_secrets` holds the one secret that signs the console's session cookies when
RUNWAY_UI_SECRET is not set. The overview lists the slots missed or skipped in the last day,
along a partial index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_secrets",
        sa.Column("id", sa.SmallInteger, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_console_secrets_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_secrets")),
    )
    op.create_index(
        op.f("ix_schedule_ticks_trouble"),
        "schedule_ticks",
        ["created_at"],
        postgresql_where=sa.text("outcome IN ('missed', 'skipped_overlap')"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_schedule_ticks_trouble"), "schedule_ticks")
    op.drop_table("console_secrets")
