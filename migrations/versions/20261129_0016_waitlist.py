"""the waitlist (issue 17): entries and the offers of freed slots.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 19:10:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    pass    # filled in by the waitlist work


def downgrade():
    pass
