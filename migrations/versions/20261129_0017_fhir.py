"""the FHIR R4 API (issue 17): OAuth2 clients, access tokens and bulk exports.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29 19:10:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    pass    # filled in by the FHIR work


def downgrade():
    pass
