"""intake, insurance, eligibility, estimates, claims and remittances (the hybrid timing)

payers and payer_allowed_amounts (the clinic's payer list and contracted rates); intakes (one
encrypted JSON document each, draft -> submitted), intake_consents (typed-name consents, append-only),
coverages (primary / secondary, encrypted field by field, card photos encrypted), eligibility_checks
(270/271 with the raw answer), estimates (insured estimates and Good Faith Estimates); claims,
remittances (one applied per claim), reconciliations (one per appointment), clearinghouse_cursor;
appointment_types: expected codes, questionnaire, required intake sections, the deposit rule;
clinic_settings.npi / tax_id and providers.npi (Good Faith Estimates, claims);
payment_consents.kind gains 'hybrid_balance'.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 12:32:29

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('clearinghouse_cursor',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('remittance_seq', sa.BigInteger(), nullable=False),
    sa.Column('polled_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('id = 1', name=op.f('ck_clearinghouse_cursor_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clearinghouse_cursor'))
    )
    op.create_table('payers',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('default_allowed_percent', sa.SmallInteger(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payers'))
    )
    op.create_table('payer_allowed_amounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payer_id', sa.String(length=40), nullable=False),
    sa.Column('billing_code_id', sa.Integer(), nullable=False),
    sa.Column('modifier', sa.String(length=2), server_default='', nullable=False),
    sa.Column('allowed_cents', sa.Integer(), nullable=False),
    sa.CheckConstraint('allowed_cents >= 0', name=op.f('ck_payer_allowed_amounts_allowed')),
    sa.ForeignKeyConstraint(['billing_code_id'], ['billing_codes.id'], name=op.f('fk_payer_allowed_amounts_billing_code_id_billing_codes')),
    sa.ForeignKeyConstraint(['payer_id'], ['payers.id'], name=op.f('fk_payer_allowed_amounts_payer_id_payers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payer_allowed_amounts')),
    sa.UniqueConstraint('payer_id', 'billing_code_id', 'modifier', name='uq_payer_allowed_amounts_code')
    )
    with op.batch_alter_table('payer_allowed_amounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payer_allowed_amounts_payer_id'), ['payer_id'], unique=False)

    op.create_table('intakes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('appointment_type_id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=24), nullable=True),
    sa.Column('previous_intake_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('draft', 'submitted')", name=op.f('ck_intakes_status')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_intakes_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['appointment_type_id'], ['appointment_types.id'], name=op.f('fk_intakes_appointment_type_id_appointment_types')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_intakes_patient_id_patients')),
    sa.ForeignKeyConstraint(['previous_intake_id'], ['intakes.id'], name=op.f('fk_intakes_previous_intake_id_intakes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intakes')),
    sa.UniqueConstraint('uuid', name=op.f('uq_intakes_uuid'))
    )
    with op.batch_alter_table('intakes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intakes_appointment_id'), ['appointment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_intakes_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('uq_intakes_one_draft', ['patient_id', 'appointment_type_id'], unique=True, postgresql_where=sa.text("status = 'draft' AND appointment_id IS NULL"))

    op.create_table('coverages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('intake_id', sa.Integer(), nullable=True),
    sa.Column('rank', sa.String(length=10), nullable=False),
    sa.Column('payer_id', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.Text(), nullable=False),
    sa.Column('group_number', sa.Text(), nullable=True),
    sa.Column('plan_name', sa.Text(), nullable=True),
    sa.Column('subscriber_name', sa.Text(), nullable=False),
    sa.Column('subscriber_birth_date', sa.Text(), nullable=False),
    sa.Column('subscriber_relationship', sa.String(length=8), nullable=False),
    sa.Column('card_front', sa.Text(), nullable=True),
    sa.Column('card_front_type', sa.String(length=32), nullable=True),
    sa.Column('card_back', sa.Text(), nullable=True),
    sa.Column('card_back_type', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("rank IN ('primary', 'secondary')", name=op.f('ck_coverages_rank')),
    sa.CheckConstraint("status IN ('active', 'replaced')", name=op.f('ck_coverages_status')),
    sa.CheckConstraint("subscriber_relationship IN ('self', 'spouse', 'child', 'other')", name=op.f('ck_coverages_relationship')),
    sa.ForeignKeyConstraint(['intake_id'], ['intakes.id'], name=op.f('fk_coverages_intake_id_intakes')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_coverages_patient_id_patients')),
    sa.ForeignKeyConstraint(['payer_id'], ['payers.id'], name=op.f('fk_coverages_payer_id_payers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coverages'))
    )
    with op.batch_alter_table('coverages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coverages_intake_id'), ['intake_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_coverages_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('uq_coverages_one_active', ['patient_id', 'rank'], unique=True, postgresql_where=sa.text("status = 'active'"))

    op.create_table('intake_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('intake_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('wording_version', sa.String(length=32), nullable=False),
    sa.Column('typed_name', sa.Text(), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signed_by_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('treatment', 'privacy', 'financial', 'telehealth')", name=op.f('ck_intake_consents_kind')),
    sa.ForeignKeyConstraint(['intake_id'], ['intakes.id'], name=op.f('fk_intake_consents_intake_id_intakes')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_intake_consents_patient_id_patients')),
    sa.ForeignKeyConstraint(['signed_by_id'], ['users.id'], name=op.f('fk_intake_consents_signed_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_consents')),
    sa.UniqueConstraint('intake_id', 'kind', name='uq_intake_consents_kind')
    )
    with op.batch_alter_table('intake_consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_consents_intake_id'), ['intake_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_intake_consents_patient_id'), ['patient_id'], unique=False)

    op.create_table('claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.Uuid(), nullable=False),
    sa.Column('encounter_id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=False),
    sa.Column('coverage_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.String(length=10), nullable=False),
    sa.Column('primary_claim_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('billed_cents', sa.Integer(), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('payer_claim_number', sa.String(length=64), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('submitted_by_id', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('adjudicated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("rank IN ('primary', 'secondary')", name=op.f('ck_claims_rank')),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'adjudicated', 'denied', 'reconciled')", name=op.f('ck_claims_status')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_claims_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['coverage_id'], ['coverages.id'], name=op.f('fk_claims_coverage_id_coverages')),
    sa.ForeignKeyConstraint(['encounter_id'], ['encounters.id'], name=op.f('fk_claims_encounter_id_encounters')),
    sa.ForeignKeyConstraint(['primary_claim_id'], ['claims.id'], name=op.f('fk_claims_primary_claim_id_claims')),
    sa.ForeignKeyConstraint(['submitted_by_id'], ['users.id'], name=op.f('fk_claims_submitted_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claims')),
    sa.UniqueConstraint('encounter_id', 'rank', name='uq_claims_encounter_rank'),
    sa.UniqueConstraint('uuid', name=op.f('uq_claims_uuid'))
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claims_appointment_id'), ['appointment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_claims_encounter_id'), ['encounter_id'], unique=False)

    op.create_table('eligibility_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('coverage_id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('service_date', sa.String(length=10), nullable=True),
    sa.Column('clearinghouse_id', sa.String(length=64), nullable=True),
    sa.Column('plan_name', sa.Text(), nullable=True),
    sa.Column('copay_cents', sa.Integer(), nullable=True),
    sa.Column('coinsurance_percent', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('deductible_cents', sa.Integer(), nullable=True),
    sa.Column('deductible_met_cents', sa.Integer(), nullable=True),
    sa.Column('oop_max_cents', sa.Integer(), nullable=True),
    sa.Column('oop_met_cents', sa.Integer(), nullable=True),
    sa.Column('errors', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('checked_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('active', 'inactive', 'error', 'unavailable')", name=op.f('ck_eligibility_checks_status')),
    sa.CheckConstraint("trigger IN ('entry', 'day_before', 'manual')", name=op.f('ck_eligibility_checks_trigger')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_eligibility_checks_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['checked_by_id'], ['users.id'], name=op.f('fk_eligibility_checks_checked_by_id_users')),
    sa.ForeignKeyConstraint(['coverage_id'], ['coverages.id'], name=op.f('fk_eligibility_checks_coverage_id_coverages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eligibility_checks'))
    )
    with op.batch_alter_table('eligibility_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eligibility_checks_appointment_id'), ['appointment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_eligibility_checks_coverage_id'), ['coverage_id'], unique=False)

    op.create_table('estimates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('appointment_type_id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=True),
    sa.Column('intake_id', sa.Integer(), nullable=True),
    sa.Column('coverage_id', sa.Integer(), nullable=True),
    sa.Column('secondary_coverage_id', sa.Integer(), nullable=True),
    sa.Column('eligibility_check_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('billed_cents', sa.Integer(), nullable=False),
    sa.Column('allowed_cents', sa.Integer(), nullable=False),
    sa.Column('copay_cents', sa.Integer(), nullable=False),
    sa.Column('deductible_cents', sa.Integer(), nullable=False),
    sa.Column('coinsurance_cents', sa.Integer(), nullable=False),
    sa.Column('oop_reduction_cents', sa.Integer(), nullable=False),
    sa.Column('secondary_cents', sa.Integer(), nullable=False),
    sa.Column('patient_cents', sa.Integer(), nullable=False),
    sa.Column('insurer_cents', sa.Integer(), nullable=False),
    sa.Column('deposit_rule', sa.String(length=10), nullable=False),
    sa.Column('deposit_cents', sa.Integer(), nullable=False),
    sa.Column('good_faith', sa.Boolean(), nullable=False),
    sa.Column('gfe_due_by', sa.DateTime(timezone=True), nullable=True),
    sa.Column('gfe_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("deposit_rule IN ('estimate', 'copay', 'percent', 'fixed')", name=op.f('ck_estimates_deposit_rule')),
    sa.CheckConstraint("kind IN ('insured', 'self_pay')", name=op.f('ck_estimates_kind')),
    sa.CheckConstraint('patient_cents >= 0 AND deposit_cents >= 0 AND billed_cents >= 0', name=op.f('ck_estimates_money')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_estimates_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['appointment_type_id'], ['appointment_types.id'], name=op.f('fk_estimates_appointment_type_id_appointment_types')),
    sa.ForeignKeyConstraint(['coverage_id'], ['coverages.id'], name=op.f('fk_estimates_coverage_id_coverages')),
    sa.ForeignKeyConstraint(['eligibility_check_id'], ['eligibility_checks.id'], name=op.f('fk_estimates_eligibility_check_id_eligibility_checks')),
    sa.ForeignKeyConstraint(['intake_id'], ['intakes.id'], name=op.f('fk_estimates_intake_id_intakes')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_estimates_patient_id_patients')),
    sa.ForeignKeyConstraint(['secondary_coverage_id'], ['coverages.id'], name=op.f('fk_estimates_secondary_coverage_id_coverages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_estimates'))
    )
    with op.batch_alter_table('estimates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_estimates_appointment_id'), ['appointment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_estimates_intake_id'), ['intake_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_estimates_patient_id'), ['patient_id'], unique=False)

    op.create_table('reconciliations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('appointment_id', sa.Integer(), nullable=False),
    sa.Column('claim_id', sa.Integer(), nullable=True),
    sa.Column('patient_responsibility_cents', sa.Integer(), nullable=False),
    sa.Column('paid_cents', sa.Integer(), nullable=False),
    sa.Column('difference_cents', sa.Integer(), nullable=False),
    sa.Column('written_off_cents', sa.Integer(), nullable=False),
    sa.Column('insurance_paid_cents', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('balance_charge_id', sa.Integer(), nullable=True),
    sa.Column('refund_id', sa.Integer(), nullable=True),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(outcome = 'balance_charge') = (balance_charge_id IS NOT NULL)", name=op.f('ck_reconciliations_charge_named')),
    sa.CheckConstraint("outcome <> 'refund' OR refund_id IS NOT NULL", name=op.f('ck_reconciliations_refund_named')),
    sa.CheckConstraint("outcome IN ('balance_charge', 'refund', 'none')", name=op.f('ck_reconciliations_outcome')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_reconciliations_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['balance_charge_id'], ['charges.id'], name=op.f('fk_reconciliations_balance_charge_id_charges')),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], name=op.f('fk_reconciliations_claim_id_claims')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_reconciliations_refund_id_refunds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliations')),
    sa.UniqueConstraint('appointment_id', name=op.f('uq_reconciliations_appointment_id'))
    )
    op.create_table('remittances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('claim_id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=80), nullable=False),
    sa.Column('source', sa.String(length=14), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('payer_claim_number', sa.String(length=64), nullable=True),
    sa.Column('billed_cents', sa.Integer(), nullable=False),
    sa.Column('allowed_cents', sa.Integer(), nullable=False),
    sa.Column('paid_cents', sa.Integer(), nullable=False),
    sa.Column('patient_responsibility_cents', sa.Integer(), nullable=False),
    sa.Column('written_off_cents', sa.Integer(), nullable=False),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('raw', sa.Text(), nullable=True),
    sa.Column('entered_by_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("source IN ('clearinghouse', 'manual')", name=op.f('ck_remittances_source')),
    sa.CheckConstraint("status IN ('processed', 'denied')", name=op.f('ck_remittances_status')),
    sa.CheckConstraint('billed_cents >= 0 AND paid_cents >= 0 AND patient_responsibility_cents >= 0 AND written_off_cents >= 0', name=op.f('ck_remittances_money')),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], name=op.f('fk_remittances_claim_id_claims')),
    sa.ForeignKeyConstraint(['entered_by_id'], ['users.id'], name=op.f('fk_remittances_entered_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_remittances')),
    sa.UniqueConstraint('claim_id', name=op.f('uq_remittances_claim_id')),
    sa.UniqueConstraint('external_id', name=op.f('uq_remittances_external_id'))
    )
    with op.batch_alter_table('appointment_types', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expected_codes', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('intake_questions', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('intake_required', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('deposit_rule', sa.String(length=10), server_default='estimate', nullable=False))
        batch_op.add_column(sa.Column('deposit_percent', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('deposit_fixed_cents', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('deposit_cap_cents', sa.Integer(), nullable=True))

        batch_op.create_check_constraint(op.f('ck_appointment_types_deposit_rule'), "deposit_rule IN ('estimate', 'copay', 'percent', 'fixed')")
        batch_op.create_check_constraint(op.f('ck_appointment_types_deposit_percent'), "deposit_percent IS NULL OR deposit_percent BETWEEN 0 AND 100")

    op.drop_constraint(op.f('ck_payment_consents_kind'), 'payment_consents', type_='check')
    op.create_check_constraint(op.f('ck_payment_consents_kind'), 'payment_consents',
                               "kind IN ('post_visit_charge', 'payment_plan', 'hybrid_balance')")

    op.add_column('clinic_settings', sa.Column('npi', sa.String(length=10), nullable=True))
    op.add_column('clinic_settings', sa.Column('tax_id', sa.String(length=12), nullable=True))
    op.add_column('providers', sa.Column('npi', sa.String(length=10), nullable=True))
    op.create_index('uq_providers_npi', 'providers', ['npi'], unique=True, postgresql_where=sa.text('npi IS NOT NULL'))
    op.add_column('claims', sa.Column('provider_npi', sa.String(length=10), nullable=True))
    op.create_index('uq_payment_consents_hybrid_deposit', 'payment_consents', ['appointment_id'], unique=True,
                    postgresql_where=sa.text("kind = 'hybrid_balance' AND card_setup_id IS NULL"))

    # intake consents are evidence: append-only like payment_consents (the app's role gets SELECT and
    # INSERT only, app/services/db_roles.py finds tables guarded by an *_append_only function).
    op.execute("""
        CREATE FUNCTION intake_consents_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'intake_consents is append-only' USING ERRCODE = 'integrity_constraint_violation';
        END $$
    """)
    op.execute("CREATE TRIGGER intake_consents_no_update_delete BEFORE UPDATE OR DELETE ON intake_consents "
               "FOR EACH ROW EXECUTE FUNCTION intake_consents_append_only()")
    op.execute("CREATE TRIGGER intake_consents_no_truncate BEFORE TRUNCATE ON intake_consents "
               "FOR EACH STATEMENT EXECUTE FUNCTION intake_consents_append_only()")



def downgrade():
    op.drop_index('uq_providers_npi', table_name='providers')
    op.drop_column('providers', 'npi')
    op.drop_column('clinic_settings', 'tax_id')
    op.drop_column('clinic_settings', 'npi')
    op.execute("DROP TRIGGER IF EXISTS intake_consents_no_truncate ON intake_consents")
    op.execute("DROP TRIGGER IF EXISTS intake_consents_no_update_delete ON intake_consents")
    op.execute("DROP FUNCTION IF EXISTS intake_consents_append_only()")
    op.execute("DROP INDEX IF EXISTS uq_payment_consents_hybrid_deposit")
    op.execute("ALTER TABLE payment_consents DISABLE TRIGGER payment_consents_no_update_delete")
    op.execute("DELETE FROM payment_consents WHERE kind = 'hybrid_balance'")
    op.execute("ALTER TABLE payment_consents ENABLE TRIGGER payment_consents_no_update_delete")
    op.drop_constraint(op.f('ck_payment_consents_kind'), 'payment_consents', type_='check')
    op.create_check_constraint(op.f('ck_payment_consents_kind'), 'payment_consents', "kind IN ('post_visit_charge', 'payment_plan')")
    with op.batch_alter_table('appointment_types', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_appointment_types_deposit_percent'), type_='check')
        batch_op.drop_constraint(op.f('ck_appointment_types_deposit_rule'), type_='check')
    with op.batch_alter_table('appointment_types', schema=None) as batch_op:
        batch_op.drop_column('deposit_cap_cents')
        batch_op.drop_column('deposit_fixed_cents')
        batch_op.drop_column('deposit_percent')
        batch_op.drop_column('deposit_rule')
        batch_op.drop_column('intake_required')
        batch_op.drop_column('intake_questions')
        batch_op.drop_column('expected_codes')

    op.drop_table('remittances')
    op.drop_table('reconciliations')
    with op.batch_alter_table('estimates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_estimates_patient_id'))
        batch_op.drop_index(batch_op.f('ix_estimates_intake_id'))
        batch_op.drop_index(batch_op.f('ix_estimates_appointment_id'))

    op.drop_table('estimates')
    with op.batch_alter_table('eligibility_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eligibility_checks_coverage_id'))
        batch_op.drop_index(batch_op.f('ix_eligibility_checks_appointment_id'))

    op.drop_table('eligibility_checks')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claims_encounter_id'))
        batch_op.drop_index(batch_op.f('ix_claims_appointment_id'))

    op.drop_table('claims')
    with op.batch_alter_table('intake_consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_consents_patient_id'))
        batch_op.drop_index(batch_op.f('ix_intake_consents_intake_id'))

    op.drop_table('intake_consents')
    with op.batch_alter_table('coverages', schema=None) as batch_op:
        batch_op.drop_index('uq_coverages_one_active', postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index(batch_op.f('ix_coverages_patient_id'))
        batch_op.drop_index(batch_op.f('ix_coverages_intake_id'))

    op.drop_table('coverages')
    with op.batch_alter_table('intakes', schema=None) as batch_op:
        batch_op.drop_index('uq_intakes_one_draft', postgresql_where=sa.text("status = 'draft' AND appointment_id IS NULL"))
        batch_op.drop_index(batch_op.f('ix_intakes_patient_id'))
        batch_op.drop_index(batch_op.f('ix_intakes_appointment_id'))

    op.drop_table('intakes')
    with op.batch_alter_table('payer_allowed_amounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payer_allowed_amounts_payer_id'))

    op.drop_table('payer_allowed_amounts')
    op.drop_table('payers')
    op.drop_table('clearinghouse_cursor')
