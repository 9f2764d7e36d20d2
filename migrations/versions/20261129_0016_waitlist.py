"""the waitlist (issue 17): entries and the offers of freed slots.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 19:10:00

"""
from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


ENTRY_STATUSES = "'active', 'left', 'fulfilled', 'expired'"
OFFER_STATUSES = "'offered', 'claimed', 'expired', 'withdrawn', 'booked', 'lapsed'"


def upgrade():
    op.create_table('waitlist_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('specialty_id', sa.Integer(), nullable=True),
    sa.Column('type_id', sa.Integer(), nullable=False),
    sa.Column('first_day', sa.Date(), nullable=False),
    sa.Column('last_day', sa.Date(), nullable=False),
    sa.Column('weekdays', sa.SmallInteger(), nullable=False),
    sa.Column('earliest', sa.Time(), nullable=False),
    sa.Column('latest', sa.Time(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f"status IN ({ENTRY_STATUSES})", name=op.f('ck_waitlist_entries_status')),
    sa.CheckConstraint('provider_id IS NOT NULL OR specialty_id IS NOT NULL', name=op.f('ck_waitlist_entries_target')),
    sa.CheckConstraint('last_day >= first_day', name=op.f('ck_waitlist_entries_days')),
    sa.CheckConstraint('latest > earliest', name=op.f('ck_waitlist_entries_times')),
    sa.CheckConstraint('weekdays BETWEEN 1 AND 127', name=op.f('ck_waitlist_entries_weekdays')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_entries_patient_id_patients')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_waitlist_entries_provider_id_providers')),
    sa.ForeignKeyConstraint(['specialty_id'], ['specialties.id'], name=op.f('fk_waitlist_entries_specialty_id_specialties')),
    sa.ForeignKeyConstraint(['type_id'], ['appointment_types.id'], name=op.f('fk_waitlist_entries_type_id_appointment_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_entries'))
    )
    op.create_index(op.f('ix_waitlist_entries_patient_id'), 'waitlist_entries', ['patient_id'], unique=False)
    op.create_index('ix_waitlist_entries_status_provider', 'waitlist_entries', ['status', 'provider_id'], unique=False)
    op.create_index('ix_waitlist_entries_status_specialty', 'waitlist_entries', ['status', 'specialty_id'], unique=False)

    op.create_table('waitlist_offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('type_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('freed_appointment_id', sa.Integer(), nullable=True),
    sa.Column('link_id', sa.Uuid(), nullable=True),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f"status IN ({OFFER_STATUSES})", name=op.f('ck_waitlist_offers_status')),
    sa.CheckConstraint("status <> 'claimed' OR hold_id IS NOT NULL", name=op.f('ck_waitlist_offers_claimed_hold')),
    sa.ForeignKeyConstraint(['entry_id'], ['waitlist_entries.id'], name=op.f('fk_waitlist_offers_entry_id_waitlist_entries')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_waitlist_offers_patient_id_patients')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_waitlist_offers_provider_id_providers')),
    sa.ForeignKeyConstraint(['type_id'], ['appointment_types.id'], name=op.f('fk_waitlist_offers_type_id_appointment_types')),
    sa.ForeignKeyConstraint(['freed_appointment_id'], ['appointments.id'], name=op.f('fk_waitlist_offers_freed_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['link_id'], ['link_tokens.id'], name=op.f('fk_waitlist_offers_link_id_link_tokens')),
    sa.ForeignKeyConstraint(['hold_id'], ['appointments.id'], name=op.f('fk_waitlist_offers_hold_id_appointments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist_offers')),
    sa.UniqueConstraint('link_id', name=op.f('uq_waitlist_offers_link_id'))
    )
    op.create_index(op.f('ix_waitlist_offers_entry_id'), 'waitlist_offers', ['entry_id'], unique=False)
    op.create_index(op.f('ix_waitlist_offers_hold_id'), 'waitlist_offers', ['hold_id'], unique=False)
    op.create_index('ix_waitlist_offers_status_expires_at', 'waitlist_offers', ['status', 'expires_at'], unique=False)
    op.create_index('ix_waitlist_offers_slot', 'waitlist_offers', ['provider_id', 'starts_at'], unique=False)
    op.create_index('uq_waitlist_offers_entry_slot', 'waitlist_offers', ['entry_id', 'provider_id', 'starts_at'],
                    unique=True, postgresql_where=sa.text("status <> 'withdrawn'"))

    # A waitlist offer is a one-click link like the others (app/services/links.py).
    op.drop_constraint(op.f('ck_link_tokens_purpose'), 'link_tokens', type_='check')
    op.create_check_constraint(op.f('ck_link_tokens_purpose'), 'link_tokens',
                               "purpose IN ('retry_checkout', 'password_reset', 'waitlist_offer')")


def downgrade():
    op.drop_index('uq_waitlist_offers_entry_slot', table_name='waitlist_offers',
                  postgresql_where=sa.text("status <> 'withdrawn'"))
    op.drop_index('ix_waitlist_offers_slot', table_name='waitlist_offers')
    op.drop_index('ix_waitlist_offers_status_expires_at', table_name='waitlist_offers')
    op.drop_index(op.f('ix_waitlist_offers_hold_id'), table_name='waitlist_offers')
    op.drop_index(op.f('ix_waitlist_offers_entry_id'), table_name='waitlist_offers')
    op.drop_table('waitlist_offers')
    op.execute("DELETE FROM link_tokens WHERE purpose = 'waitlist_offer'")
    op.drop_constraint(op.f('ck_link_tokens_purpose'), 'link_tokens', type_='check')
    op.create_check_constraint(op.f('ck_link_tokens_purpose'), 'link_tokens',
                               "purpose IN ('retry_checkout', 'password_reset')")
    op.drop_index('ix_waitlist_entries_status_specialty', table_name='waitlist_entries')
    op.drop_index('ix_waitlist_entries_status_provider', table_name='waitlist_entries')
    op.drop_index(op.f('ix_waitlist_entries_patient_id'), table_name='waitlist_entries')
    op.drop_table('waitlist_entries')
