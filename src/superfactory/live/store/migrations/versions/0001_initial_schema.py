"""Initial schema of the control plane store: tenants, tokens, factories, links, signals, jobs, events, actions.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-01 10:34:05.006952
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('action_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('factory_id', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at_unix_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('factories',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('lease_epoch', sa.Integer(), server_default='0', nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=True),
    sa.Column('last_heartbeat_unix_s', sa.Float(), nullable=True),
    sa.Column('lost', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('down_nodes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('links',
    sa.Column('a', sa.String(length=64), nullable=False),
    sa.Column('b', sa.String(length=64), nullable=False),
    sa.Column('bandwidth_gbps', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('egress_usd_per_gb', sa.Float(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('a', 'b')
    )
    op.create_table('locks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_unix_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('series',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=16), nullable=False),
    sa.Column('step_s', sa.Integer(), nullable=False),
    sa.Column('points', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'key')
    )
    op.create_table('signals',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'key', 'hour')
    )
    op.create_table('tenants',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('quotas', sa.JSON(), nullable=False),
    sa.Column('created_at_unix_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('accelerator', sa.String(length=32), nullable=False),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('factory_id', sa.String(length=64), nullable=True),
    sa.Column('nodes', sa.JSON(), nullable=False),
    sa.Column('fencing_token', sa.Integer(), server_default='0', nullable=False),
    sa.Column('stop_reason', sa.String(length=16), nullable=True),
    sa.Column('migrate_to', sa.JSON(), nullable=True),
    sa.Column('progress_s', sa.Float(), server_default='0', nullable=False),
    sa.Column('committed_progress_s', sa.Float(), server_default='0', nullable=False),
    sa.Column('checkpoint', sa.JSON(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('tokens_per_s', sa.Float(), nullable=True),
    sa.Column('submit_s', sa.Integer(), nullable=False),
    sa.Column('waiting_since_s', sa.Integer(), nullable=False),
    sa.Column('last_factory_id', sa.String(length=64), nullable=True),
    sa.Column('last_nodes', sa.JSON(), nullable=False),
    sa.Column('interrupted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('preempted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('carbon_spent_tco2', sa.Float(), server_default='0', nullable=False),
    sa.Column('waiting_reason', sa.Text(), nullable=True),
    sa.Column('submitted_at_unix_s', sa.Float(), nullable=False),
    sa.Column('updated_at_unix_s', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name='uq_jobs_tenant_idempotency_key')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_factory', ['factory_id'], unique=False)
        batch_op.create_index('ix_jobs_state', ['state'], unique=False)
        batch_op.create_index('ix_jobs_tenant_state', ['tenant_id', 'state'], unique=False)

    op.create_table('tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tenant_id', sa.String(length=64), nullable=True),
    sa.Column('factory_id', sa.String(length=64), nullable=True),
    sa.Column('created_at_unix_s', sa.Float(), nullable=False),
    sa.Column('revoked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('job_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('at_unix_s', sa.Float(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.create_index('ix_job_events_job', ['job_id', 'id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_index('ix_job_events_job')

    op.drop_table('job_events')
    op.drop_table('tokens')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_state')
        batch_op.drop_index('ix_jobs_state')
        batch_op.drop_index('ix_jobs_factory')

    op.drop_table('jobs')
    op.drop_table('tenants')
    op.drop_table('signals')
    op.drop_table('series')
    op.drop_table('meta')
    op.drop_table('locks')
    op.drop_table('links')
    op.drop_table('factories')
    op.drop_table('actions')

