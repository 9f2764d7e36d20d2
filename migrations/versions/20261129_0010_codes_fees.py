"""billing codes (HCPCS, LOCAL, CPT) and the fee schedule

billing_codes: one row per (system, code); CPT rows come only from a licensed clinic's file
(``flask codes import``), HCPCS Level II and the demo clinic's LOCAL codes from the demo seed.
fee_schedule: a price in integer cents per code and modifier ('' for none), in force from a date.
Both are ordinary tables: the app's role gets SELECT, INSERT, UPDATE, DELETE (app/services/db_roles.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 18:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'billing_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('system', sa.String(length=10), nullable=False),
        sa.Column('code', sa.String(length=20), nullable=False),
        sa.Column('descriptor', sa.Text(), nullable=False),
        sa.Column('active', sa.Boolean(), server_default='true', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("system IN ('HCPCS', 'LOCAL', 'CPT')", name=op.f('ck_billing_codes_system')),
        sa.CheckConstraint("code ~ '^[A-Z0-9][A-Z0-9.-]{0,19}$'", name=op.f('ck_billing_codes_code_format')),
        sa.CheckConstraint("length(descriptor) BETWEEN 1 AND 2000",
                           name=op.f('ck_billing_codes_descriptor_length')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_codes')),
        sa.UniqueConstraint('system', 'code', name='uq_billing_codes_system_code'),
    )
    op.create_table(
        'fee_schedule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('billing_code_id', sa.Integer(), nullable=False),
        sa.Column('modifier', sa.String(length=2), server_default='', nullable=False),
        sa.Column('price_cents', sa.Integer(), nullable=False),
        sa.Column('effective_from', sa.Date(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.CheckConstraint("modifier ~ '^([A-Z0-9]{2})?$'", name=op.f('ck_fee_schedule_modifier_format')),
        sa.CheckConstraint("price_cents > 0 AND price_cents <= 999999999", name=op.f('ck_fee_schedule_price_positive')),
        sa.ForeignKeyConstraint(['billing_code_id'], ['billing_codes.id'], ondelete='RESTRICT',
                                name=op.f('fk_fee_schedule_billing_code_id_billing_codes')),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL',
                                name=op.f('fk_fee_schedule_created_by_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_fee_schedule')),
        # Also the index price_for() reads: (code, modifier) equal, effective_from descending.
        sa.UniqueConstraint('billing_code_id', 'modifier', 'effective_from', name='uq_fee_schedule_code_mod_from'),
    )


def downgrade():
    op.drop_table('fee_schedule')
    op.drop_table('billing_codes')
