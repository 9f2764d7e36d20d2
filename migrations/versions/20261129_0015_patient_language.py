"""patients' language (issue 17): users.locale, 'en' or 'es'; NULL means the browser's choice.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 19:10:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('locale', sa.String(length=8), nullable=True))
    op.create_check_constraint(op.f('ck_users_locale'), 'users', "locale IN ('en', 'es')")


def downgrade():
    op.drop_constraint(op.f('ck_users_locale'), 'users', type_='check')
    op.drop_column('users', 'locale')
