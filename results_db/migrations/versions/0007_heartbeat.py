"""A campaign's driver heartbeat (a SIGKILLed driver's campaign shows as abandoned), and
stored JSON made strict (``Infinity``/``NaN`` written before made SQLite's JSON functions
fail for every query that touched them)

Revision ID: 0007_heartbeat
Revises: 0006_workload_meta
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_heartbeat"
down_revision = "0006_workload_meta"
branch_labels = None
depends_on = None

# JSON columns a playbook or a trial could have filled with a non-finite number.
JSON_COLUMNS = {
    "campaigns": ("effective",),
    "trials": ("params", "settings", "context"),
}


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's json type never accepted them
    for table, columns in JSON_COLUMNS.items():
        for column in columns:
            # Python's json writes the bare tokens; null is what strict JSON has for them.
            fixed = column
            for token in ("-Infinity", "Infinity", "NaN"):
                fixed = f"replace({fixed}, '{token}', 'null')"
            op.execute(f"UPDATE {table} SET {column} = {fixed} WHERE json_valid({column}) = 0")


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
