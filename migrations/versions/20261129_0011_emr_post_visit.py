"""the basic EMR and post-visit payment

encounters (one per visit; SOAP fields encrypted), encounter_diagnoses (ICD-10-CM),
encounter_lines (code, modifier, units, pointers; priced at signing), encounter_addenda;
card_setups (SetupIntents saving a card at booking), payment_consents (the consent's wording,
time and card), collection_cases (a visit charge from the signed note to paid or written off);
appointments.payment_method_id (the saved card a post-visit booking relies on).

Immutability in the database: a signed encounter refuses UPDATE and DELETE, and so do the
diagnoses and lines of a signed encounter, which also refuses new ones (encounter_signed_guard);
addenda and payment consents refuse UPDATE, DELETE and TRUNCATE (``*_append_only``: the app's
role is granted SELECT and INSERT only on them, app/services/db_roles.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 20:00:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _ts(name, nullable=True, default=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     **({"server_default": sa.text('now()')} if default else {}))


def upgrade():
    op.add_column('appointments', sa.Column('payment_method_id', sa.String(length=255), nullable=True))
    op.create_table(
        'encounters',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('appointment_id', sa.Integer(), sa.ForeignKey('appointments.id', name='fk_encounters_appointment_id_appointments'), nullable=False),
        sa.Column('patient_id', sa.Integer(), sa.ForeignKey('patients.id', name='fk_encounters_patient_id_patients'), nullable=False),
        sa.Column('provider_id', sa.Integer(), sa.ForeignKey('providers.id', name='fk_encounters_provider_id_providers'), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('subjective', sa.Text(), nullable=True),
        sa.Column('objective', sa.Text(), nullable=True),
        sa.Column('assessment', sa.Text(), nullable=True),
        sa.Column('plan', sa.Text(), nullable=True),
        _ts('opened_at', nullable=False),
        sa.Column('opened_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_encounters_opened_by_id_users'), nullable=True),
        sa.Column('opened_from', sa.String(length=16), nullable=False),
        _ts('signed_at'),
        sa.Column('signed_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_encounters_signed_by_id_users'), nullable=True),
        sa.Column('content_hash', sa.String(length=64), nullable=True),
        sa.Column('total_cents', sa.Integer(), nullable=True),
        _ts('updated_at', nullable=False, default=True),
        sa.CheckConstraint("status IN ('open', 'signed')", name=op.f('ck_encounters_status')),
        sa.CheckConstraint("status <> 'signed' OR (signed_at IS NOT NULL AND signed_by_id IS NOT NULL "
                           "AND content_hash IS NOT NULL)", name=op.f('ck_encounters_signed_complete')),
        sa.CheckConstraint("version >= 1", name=op.f('ck_encounters_version')),
        sa.UniqueConstraint('appointment_id', name=op.f('uq_encounters_appointment_id')),
    )
    op.create_index('ix_encounters_patient_id', 'encounters', ['patient_id'])
    op.create_index('ix_encounters_provider_id', 'encounters', ['provider_id'])
    op.create_table(
        'encounter_diagnoses',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('encounter_id', sa.Integer(), sa.ForeignKey('encounters.id', name='fk_encounter_diagnoses_encounter_id_encounters'), nullable=False),
        sa.Column('position', sa.SmallInteger(), nullable=False),
        sa.Column('code', sa.String(length=8), nullable=False),
        sa.UniqueConstraint('encounter_id', 'position', name='uq_encounter_diagnoses_position'),
        sa.UniqueConstraint('encounter_id', 'code', name='uq_encounter_diagnoses_code'),
        sa.CheckConstraint("position BETWEEN 1 AND 12", name=op.f('ck_encounter_diagnoses_position')),
        sa.CheckConstraint("code ~ '^[A-Z][0-9][0-9A-Z](\\.[0-9A-Z]{1,4})?$'", name=op.f('ck_encounter_diagnoses_code_format')),
    )
    op.create_index('ix_encounter_diagnoses_encounter_id', 'encounter_diagnoses', ['encounter_id'])
    op.create_table(
        'encounter_lines',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('encounter_id', sa.Integer(), sa.ForeignKey('encounters.id', name='fk_encounter_lines_encounter_id_encounters'), nullable=False),
        sa.Column('position', sa.SmallInteger(), nullable=False),
        sa.Column('billing_code_id', sa.Integer(), sa.ForeignKey('billing_codes.id', ondelete='RESTRICT', name='fk_encounter_lines_billing_code_id_billing_codes'), nullable=False),
        sa.Column('code_system', sa.String(length=10), nullable=False),
        sa.Column('code', sa.String(length=20), nullable=False),
        sa.Column('modifier', sa.String(length=2), nullable=False),
        sa.Column('units', sa.SmallInteger(), nullable=False),
        sa.Column('diagnosis_pointers', postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column('unit_price_cents', sa.Integer(), nullable=True),
        sa.Column('amount_cents', sa.Integer(), nullable=True),
        sa.Column('fee_schedule_entry_id', sa.Integer(), sa.ForeignKey('fee_schedule.id', ondelete='RESTRICT', name='fk_encounter_lines_fee_schedule_entry_id_fee_schedule'), nullable=True),
        sa.UniqueConstraint('encounter_id', 'position', name='uq_encounter_lines_position'),
        sa.CheckConstraint("units BETWEEN 1 AND 99", name=op.f('ck_encounter_lines_units')),
        sa.CheckConstraint("modifier ~ '^([A-Z0-9]{2})?$'", name=op.f('ck_encounter_lines_modifier_format')),
        sa.CheckConstraint("(unit_price_cents IS NULL) = (amount_cents IS NULL)", name=op.f('ck_encounter_lines_priced_together')),
        sa.CheckConstraint("amount_cents IS NULL OR (unit_price_cents > 0 AND amount_cents = unit_price_cents * units)",
                           name=op.f('ck_encounter_lines_amount')),
        sa.CheckConstraint("cardinality(diagnosis_pointers) BETWEEN 1 AND 4", name=op.f('ck_encounter_lines_pointers')),
    )
    op.create_index('ix_encounter_lines_encounter_id', 'encounter_lines', ['encounter_id'])
    op.create_table(
        'encounter_addenda',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('encounter_id', sa.Integer(), sa.ForeignKey('encounters.id', name='fk_encounter_addenda_encounter_id_encounters'), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('signed_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_encounter_addenda_signed_by_id_users'), nullable=False),
        _ts('signed_at', nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.CheckConstraint("length(content_hash) = 64", name=op.f('ck_encounter_addenda_hash')),
    )
    op.create_index('ix_encounter_addenda_encounter_id', 'encounter_addenda', ['encounter_id'])
    op.create_table(
        'card_setups',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('uuid', sa.Uuid(), nullable=False),
        sa.Column('appointment_id', sa.Integer(), sa.ForeignKey('appointments.id', name='fk_card_setups_appointment_id_appointments'), nullable=False),
        sa.Column('patient_id', sa.Integer(), sa.ForeignKey('patients.id', name='fk_card_setups_patient_id_patients'), nullable=False),
        sa.Column('stripe_setup_intent_id', sa.String(length=255), nullable=True),
        sa.Column('client_secret', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('payment_method_id', sa.String(length=255), nullable=True),
        sa.Column('card_brand', sa.String(length=20), nullable=True),
        sa.Column('card_last4', sa.String(length=4), nullable=True),
        sa.Column('card_exp_month', sa.SmallInteger(), nullable=True),
        sa.Column('card_exp_year', sa.SmallInteger(), nullable=True),
        sa.Column('consent_version', sa.String(length=32), nullable=True),
        _ts('consent_accepted_at'),
        sa.Column('consent_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_card_setups_consent_by_id_users'), nullable=True),
        _ts('created_at', nullable=False, default=True),
        _ts('updated_at', nullable=False, default=True),
        sa.UniqueConstraint('uuid', name=op.f('uq_card_setups_uuid')),
        sa.UniqueConstraint('stripe_setup_intent_id', name=op.f('uq_card_setups_stripe_setup_intent_id')),
        sa.CheckConstraint("status IN ('creating', 'requires_payment_method', 'requires_confirmation', "
                           "'requires_action', 'processing', 'succeeded', 'canceled')", name=op.f('ck_card_setups_status')),
    )
    op.create_index('ix_card_setups_appointment_id', 'card_setups', ['appointment_id'])
    op.create_index('ix_card_setups_patient_id', 'card_setups', ['patient_id'])
    op.create_index('uq_card_setups_one_open', 'card_setups', ['appointment_id'], unique=True,
                    postgresql_where=sa.text("status NOT IN ('succeeded', 'canceled')"))
    op.create_table(
        'payment_consents',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('appointment_id', sa.Integer(), sa.ForeignKey('appointments.id', name='fk_payment_consents_appointment_id_appointments'), nullable=False),
        sa.Column('patient_id', sa.Integer(), sa.ForeignKey('patients.id', name='fk_payment_consents_patient_id_patients'), nullable=False),
        sa.Column('kind', sa.String(length=24), nullable=False),
        sa.Column('wording', sa.Text(), nullable=False),
        sa.Column('wording_version', sa.String(length=32), nullable=False),
        sa.Column('payment_method_id', sa.String(length=255), nullable=True),
        sa.Column('card_brand', sa.String(length=20), nullable=True),
        sa.Column('card_last4', sa.String(length=4), nullable=True),
        sa.Column('card_setup_id', sa.Integer(), sa.ForeignKey('card_setups.id', name='fk_payment_consents_card_setup_id_card_setups'), nullable=True),
        _ts('accepted_at', nullable=False),
        sa.Column('accepted_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_payment_consents_accepted_by_id_users'), nullable=True),
        sa.CheckConstraint("kind IN ('post_visit_charge', 'payment_plan')", name=op.f('ck_payment_consents_kind')),
    )
    op.create_index('ix_payment_consents_appointment_id', 'payment_consents', ['appointment_id'])
    op.create_index('ix_payment_consents_patient_id', 'payment_consents', ['patient_id'])
    op.create_table(
        'collection_cases',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('charge_id', sa.Integer(), sa.ForeignKey('charges.id', name='fk_collection_cases_charge_id_charges'), nullable=False),
        sa.Column('encounter_id', sa.Integer(), sa.ForeignKey('encounters.id', name='fk_collection_cases_encounter_id_encounters'), nullable=False),
        sa.Column('appointment_id', sa.Integer(), sa.ForeignKey('appointments.id', name='fk_collection_cases_appointment_id_appointments'), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('failure_kind', sa.String(length=16), nullable=True),
        sa.Column('failure_code', sa.String(length=64), nullable=True),
        sa.Column('retries_done', sa.Integer(), nullable=False),
        _ts('next_retry_at'), _ts('escalate_at'), _ts('link_sent_at'), _ts('final_notice_at'), _ts('agency_at'),
        sa.Column('written_off_reason', sa.Text(), nullable=True),
        sa.Column('written_off_by_id', sa.Integer(), sa.ForeignKey('users.id', name='fk_collection_cases_written_off_by_id_users'), nullable=True),
        sa.Column('plan_instalments', sa.SmallInteger(), nullable=True),
        sa.Column('plan_instalment_cents', sa.Integer(), nullable=True),
        sa.Column('plan_paid', sa.SmallInteger(), nullable=False),
        _ts('plan_next_at'), _ts('resolved_at'),
        sa.Column('recovered', sa.Boolean(), nullable=False),
        _ts('created_at', nullable=False, default=True),
        _ts('updated_at', nullable=False, default=True),
        sa.UniqueConstraint('charge_id', name=op.f('uq_collection_cases_charge_id')),
        sa.CheckConstraint("status IN ('pending', 'charging', 'paid', 'recovering', 'collections', 'with_agency', "
                           "'payment_plan', 'written_off')", name=op.f('ck_collection_cases_status')),
        sa.CheckConstraint("failure_kind IS NULL OR failure_kind IN ('soft', 'hard', 'authentication', 'no_card')",
                           name=op.f('ck_collection_cases_failure_kind')),
        sa.CheckConstraint("status <> 'written_off' OR (written_off_reason IS NOT NULL AND written_off_by_id IS NOT NULL)",
                           name=op.f('ck_collection_cases_write_off_justified')),
        sa.CheckConstraint("retries_done >= 0", name=op.f('ck_collection_cases_retries')),
        sa.CheckConstraint("plan_instalments IS NULL OR plan_instalments BETWEEN 2 AND 24", name=op.f('ck_collection_cases_plan')),
    )
    for column in ('encounter_id', 'appointment_id', 'next_retry_at', 'escalate_at', 'plan_next_at'):
        op.create_index(f'ix_collection_cases_{column}', 'collection_cases', [column])

    # -- immutability ------------------------------------------------------------------------------
    op.execute("""
        CREATE FUNCTION encounter_signed_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            enc_status text;
        BEGIN
            IF TG_TABLE_NAME = 'encounters' THEN
                IF OLD.status = 'signed' THEN
                    RAISE EXCEPTION 'encounter % is signed: it cannot be changed (write an addendum)', OLD.id
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                RETURN NEW;
            END IF;
            IF TG_OP = 'INSERT' THEN
                SELECT status INTO enc_status FROM encounters WHERE id = NEW.encounter_id;
            ELSE
                SELECT status INTO enc_status FROM encounters WHERE id = OLD.encounter_id;
            END IF;
            IF enc_status = 'signed' THEN
                RAISE EXCEPTION '% of a signed encounter cannot be added, changed or removed', TG_TABLE_NAME
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END $$
    """)
    op.execute("CREATE TRIGGER encounters_signed_immutable BEFORE UPDATE OR DELETE ON encounters "
               "FOR EACH ROW EXECUTE FUNCTION encounter_signed_guard()")
    for table in ('encounter_diagnoses', 'encounter_lines'):
        op.execute(f"CREATE TRIGGER {table}_signed_immutable BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION encounter_signed_guard()")
    for table in ('encounter_addenda', 'payment_consents'):
        op.execute(f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only' USING ERRCODE = 'integrity_constraint_violation';
            END $$
        """)
        op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()")


def downgrade():
    for table in ('encounter_addenda', 'payment_consents'):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    for table in ('encounters', 'encounter_diagnoses', 'encounter_lines'):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_signed_immutable ON {table}")
    op.execute("DROP FUNCTION IF EXISTS encounter_signed_guard()")
    op.drop_table('collection_cases')
    op.drop_table('payment_consents')
    op.drop_table('card_setups')
    op.drop_table('encounter_addenda')
    op.drop_table('encounter_lines')
    op.drop_table('encounter_diagnoses')
    op.drop_table('encounters')
    op.drop_column('appointments', 'payment_method_id')
