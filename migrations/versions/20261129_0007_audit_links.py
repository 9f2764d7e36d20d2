"""audit chain off the commit path: row ids from a sequence, links in audit_links

Audit rows no longer take a lock or read the chain head: each is written in its
change's transaction with its own HMAC, and ``seq`` comes from a sequence. The
chain moves to ``audit_links``, appended by one sequencer (``audit.link_pending``)
for committed rows. Like ``audit_events``, ``audit_links`` refuses UPDATE, DELETE
and TRUNCATE.

Existing rows keep their columns (prev_hash included) and their HMAC, which still
verifies with the same function; the first sequencer run links them in ``seq``
order, before any row written later (their seqs are lower), so the old row-to-row
chain is superseded by the links and nothing needs rewriting.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("CREATE SEQUENCE audit_events_seq_seq AS bigint OWNED BY audit_events.seq")
    op.execute("SELECT setval('audit_events_seq_seq', coalesce((SELECT max(seq) FROM audit_events), 0) + 1, false)")
    op.execute("ALTER TABLE audit_events ALTER COLUMN seq SET DEFAULT nextval('audit_events_seq_seq')")
    op.alter_column('audit_events', 'prev_hash', existing_type=sa.String(length=64), nullable=True)

    op.create_table('audit_links',
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('event_seq', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['event_seq'], ['audit_events.seq'],
                            name=op.f('fk_audit_links_event_seq_audit_events'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('position', name=op.f('pk_audit_links')),
    sa.UniqueConstraint('event_seq', name=op.f('uq_audit_links_event_seq'))
    )
    op.execute("""
        CREATE FUNCTION audit_links_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_links is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
    """)
    op.execute("""
        CREATE TRIGGER audit_links_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_links
        FOR EACH ROW EXECUTE FUNCTION audit_links_append_only();
    """)
    op.execute("""
        CREATE TRIGGER audit_links_no_truncate
        BEFORE TRUNCATE ON audit_links
        FOR EACH STATEMENT EXECUTE FUNCTION audit_links_append_only();
    """)


def downgrade():
    # Rows written since keep prev_hash NULL; the old row-to-row chain cannot be rebuilt for them.
    op.execute("DROP TRIGGER IF EXISTS audit_links_no_truncate ON audit_links")
    op.execute("DROP TRIGGER IF EXISTS audit_links_no_update_delete ON audit_links")
    op.execute("DROP FUNCTION IF EXISTS audit_links_append_only()")
    op.drop_table('audit_links')
    op.execute("ALTER TABLE audit_events ALTER COLUMN seq DROP DEFAULT")
    op.execute("DROP SEQUENCE IF EXISTS audit_events_seq_seq")
