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
    op.create_table('fhir_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('scopes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_fhir_clients_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_clients')),
    sa.UniqueConstraint('client_id', name=op.f('uq_fhir_clients_client_id'))
    )
    op.create_table('fhir_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['fhir_clients.id'], name=op.f('fk_fhir_tokens_client_id_fhir_clients'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_fhir_tokens_token_hash'))
    )
    with op.batch_alter_table('fhir_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fhir_tokens_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fhir_tokens_expires_at'), ['expires_at'], unique=False)

    op.create_table('fhir_exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('types', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('done_types', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('request_url', sa.Text(), nullable=False),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'completed', 'failed')", name=op.f('ck_fhir_exports_status')),
    sa.ForeignKeyConstraint(['client_id'], ['fhir_clients.id'], name=op.f('fk_fhir_exports_client_id_fhir_clients'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_exports'))
    )
    with op.batch_alter_table('fhir_exports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fhir_exports_client_id'), ['client_id'], unique=False)

    op.create_table('fhir_export_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('resource_type', sa.String(length=40), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['export_id'], ['fhir_exports.id'],
                            name=op.f('fk_fhir_export_files_export_id_fhir_exports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fhir_export_files')),
    sa.UniqueConstraint('export_id', 'resource_type', name='uq_fhir_export_files_export_type')
    )
    with op.batch_alter_table('fhir_export_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fhir_export_files_export_id'), ['export_id'], unique=False)


def downgrade():
    with op.batch_alter_table('fhir_export_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fhir_export_files_export_id'))
    op.drop_table('fhir_export_files')
    with op.batch_alter_table('fhir_exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fhir_exports_client_id'))
    op.drop_table('fhir_exports')
    with op.batch_alter_table('fhir_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fhir_tokens_expires_at'))
        batch_op.drop_index(batch_op.f('ix_fhir_tokens_client_id'))
    op.drop_table('fhir_tokens')
    op.drop_table('fhir_clients')
