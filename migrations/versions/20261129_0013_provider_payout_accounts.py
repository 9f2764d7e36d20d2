"""provider payout accounts (issue 16, first slice)

provider_accounts: one Stripe Connect Express account per provider (unique provider and Stripe
account id), stored with its UUID (the idempotency key's root) before Stripe creates the account;
the status derived from Stripe's flags (creating | onboarding | restricted | enabled | disabled),
those flags, the requirements still due (field names), and the ``created`` time of the newest
account.updated applied (an older event is ignored).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 13:56:23

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('provider_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('stripe_account_id', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('details_submitted', sa.Boolean(), nullable=False),
    sa.Column('charges_enabled', sa.Boolean(), nullable=False),
    sa.Column('payouts_enabled', sa.Boolean(), nullable=False),
    sa.Column('transfers_active', sa.Boolean(), nullable=False),
    sa.Column('requirements_due', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('disabled_reason', sa.String(length=120), nullable=True),
    sa.Column('last_event_created', sa.BigInteger(), nullable=True),
    sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status = 'creating' OR stripe_account_id IS NOT NULL", name=op.f('ck_provider_accounts_account_known')),
    sa.CheckConstraint("status IN ('creating', 'onboarding', 'restricted', 'enabled', 'disabled')", name=op.f('ck_provider_accounts_status')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_provider_accounts_provider_id_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_accounts')),
    sa.UniqueConstraint('provider_id', name=op.f('uq_provider_accounts_provider_id')),
    sa.UniqueConstraint('stripe_account_id', name=op.f('uq_provider_accounts_stripe_account_id')),
    sa.UniqueConstraint('uuid', name=op.f('uq_provider_accounts_uuid'))
    )


def downgrade():
    op.drop_table('provider_accounts')
