"""field-level encryption: PHI columns encrypted in place, keyed look-up hashes

Encrypts in place, under the active field key of the app's settings (FIELD_KEYS /
FIELD_KEY_ACTIVE; development and test derive them from SECRET_KEY): users.phone and
users.mfa_secret, phone_verifications.phone, notifications.recipient / body / error,
appointments.cancel_reason, refunds.clinical_reason (app/services/field_crypto.py; the
models read them through EncryptedText). Adds the keyed look-up hashes (LOOKUP_HASH_KEY):
users.email_hash (unique), users.phone_hash and phone_verifications.phone_hash (indexed), and
re-keys sms_opt_outs by the number's hash: the number itself is no longer stored.

audit_events is NOT rewritten: its rows are append-only (the database refuses UPDATE) and
their HMACs cover the plaintext, so rows written before this migration keep a plaintext
reason (read as legacy values), and rows written after it are encrypted as they are inserted.

The downgrade decrypts in place (the keys must still be configured); an opt-out whose number
belongs to no account cannot be turned back into a number and is dropped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 16:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# (table, primary key, column): encrypted in place, bound to "table.column".
ENCRYPTED = (
    ("users", "id", "phone"),
    ("users", "id", "mfa_secret"),
    ("phone_verifications", "id", "phone"),
    ("notifications", "id", "recipient"),
    ("notifications", "id", "body"),
    ("notifications", "id", "error"),
    ("appointments", "id", "cancel_reason"),
    ("refunds", "id", "clinical_reason"),
)
BATCH = 500


def _keyring():
    from flask import current_app

    from app.services import field_crypto

    return field_crypto.keyring_from_settings(current_app.config["SETTINGS"])


def _rewrite(conn, table, pk, column, convert, where):
    """Apply ``convert`` to every value of ``table.column`` matching ``where``, in batches by key."""
    last = None
    while True:
        query = f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL AND {where}"
        params = {"n": BATCH}
        if last is not None:
            query += f" AND {pk} > :last"
            params["last"] = last
        rows = conn.execute(sa.text(query + f" ORDER BY {pk} LIMIT :n"), params).fetchall()
        if not rows:
            return
        conn.execute(sa.text(f"UPDATE {table} SET {column} = :value WHERE {pk} = :key"),
                     [{"key": key, "value": convert(value, f"{table}.{column}")} for key, value in rows])
        last = rows[-1][0]


def _fill_hash(conn, table, pk, source, target, kind, normalize):
    keyring = _keyring()
    rows = conn.execute(sa.text(f"SELECT {pk}, {source} FROM {table} WHERE {source} IS NOT NULL")).fetchall()
    if rows:
        conn.execute(sa.text(f"UPDATE {table} SET {target} = :digest WHERE {pk} = :key"),
                     [{"key": key, "digest": keyring.lookup_hash(kind, normalize(value))} for key, value in rows])


def upgrade():
    keyring = _keyring()
    conn = op.get_bind()

    # Wider columns: a ciphertext is longer than the value.
    op.alter_column('users', 'phone', type_=sa.Text(), existing_type=sa.String(length=20), existing_nullable=True)
    op.alter_column('users', 'mfa_secret', type_=sa.Text(), existing_type=sa.String(length=64),
                    existing_nullable=True)
    op.alter_column('phone_verifications', 'phone', type_=sa.Text(), existing_type=sa.String(length=20),
                    existing_nullable=False)
    op.alter_column('notifications', 'recipient', type_=sa.Text(), existing_type=sa.String(length=254),
                    existing_nullable=False)

    # Look-up hashes, over the plaintext (before it is encrypted).
    op.add_column('users', sa.Column('email_hash', sa.String(length=64), nullable=True))
    op.add_column('users', sa.Column('phone_hash', sa.String(length=64), nullable=True))
    op.add_column('phone_verifications', sa.Column('phone_hash', sa.String(length=64), nullable=True))
    _fill_hash(conn, 'users', 'id', 'email', 'email_hash', 'email', lambda v: v.strip().lower())
    _fill_hash(conn, 'users', 'id', 'phone', 'phone_hash', 'phone', lambda v: v.strip())
    _fill_hash(conn, 'phone_verifications', 'id', 'phone', 'phone_hash', 'phone', lambda v: v.strip())
    op.create_unique_constraint(op.f('uq_users_email_hash'), 'users', ['email_hash'])
    op.create_index(op.f('ix_users_phone_hash'), 'users', ['phone_hash'], unique=False)

    # Opt-outs keyed by the number's hash; the number goes.
    op.add_column('sms_opt_outs', sa.Column('phone_hash', sa.String(length=64), nullable=True))
    _fill_hash(conn, 'sms_opt_outs', 'phone', 'phone', 'phone_hash', 'phone', lambda v: v.strip())
    op.drop_constraint(op.f('pk_sms_opt_outs'), 'sms_opt_outs', type_='primary')
    op.drop_column('sms_opt_outs', 'phone')
    op.alter_column('sms_opt_outs', 'phone_hash', nullable=False, existing_type=sa.String(length=64))
    op.create_primary_key(op.f('pk_sms_opt_outs'), 'sms_opt_outs', ['phone_hash'])

    # Encrypt in place (values already encrypted, e.g. by a re-run after a failure, are left alone).
    for table, pk, column in ENCRYPTED:
        _rewrite(conn, table, pk, column, lambda value, context: keyring.encrypt(value, context=context),
                 "left({col}, 3) <> 'v1:'".format(col=column))


def downgrade():
    keyring = _keyring()
    conn = op.get_bind()
    for table, pk, column in ENCRYPTED:
        _rewrite(conn, table, pk, column, lambda value, context: keyring.decrypt(value, context=context),
                 "left({col}, 3) = 'v1:'".format(col=column))

    op.add_column('sms_opt_outs', sa.Column('phone', sa.String(length=20), nullable=True))
    conn.execute(sa.text("UPDATE sms_opt_outs o SET phone = u.phone FROM users u WHERE u.phone_hash = o.phone_hash"))
    conn.execute(sa.text("DELETE FROM sms_opt_outs WHERE phone IS NULL"))
    conn.execute(sa.text("DELETE FROM sms_opt_outs o USING sms_opt_outs p "
                         "WHERE o.phone = p.phone AND o.phone_hash > p.phone_hash"))
    op.drop_constraint(op.f('pk_sms_opt_outs'), 'sms_opt_outs', type_='primary')
    op.drop_column('sms_opt_outs', 'phone_hash')
    op.alter_column('sms_opt_outs', 'phone', nullable=False, existing_type=sa.String(length=20))
    op.create_primary_key(op.f('pk_sms_opt_outs'), 'sms_opt_outs', ['phone'])

    op.drop_index(op.f('ix_users_phone_hash'), table_name='users')
    op.drop_constraint(op.f('uq_users_email_hash'), 'users', type_='unique')
    op.drop_column('phone_verifications', 'phone_hash')
    op.drop_column('users', 'phone_hash')
    op.drop_column('users', 'email_hash')
    op.alter_column('notifications', 'recipient', type_=sa.String(length=254), existing_type=sa.Text(),
                    existing_nullable=False)
    op.alter_column('phone_verifications', 'phone', type_=sa.String(length=20), existing_type=sa.Text(),
                    existing_nullable=False)
    op.alter_column('users', 'mfa_secret', type_=sa.String(length=64), existing_type=sa.Text(),
                    existing_nullable=True)
    op.alter_column('users', 'phone', type_=sa.String(length=20), existing_type=sa.Text(), existing_nullable=True)
