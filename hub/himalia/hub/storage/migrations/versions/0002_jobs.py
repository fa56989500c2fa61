"""scheduled notebook jobs: definitions, versions, runs and recorded values

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('himalia_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('schedule', sa.String(length=100), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('profile', sa.String(length=64), nullable=False),
    sa.Column('timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('retry_backoff_seconds', sa.Integer(), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('notify', sa.JSON(), nullable=False),
    sa.Column('keep_runs', sa.Integer(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.Column('last_slot', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_jobs')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_himalia_jobs_owner'))
    )
    with op.batch_alter_table('himalia_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_jobs_owner'), ['owner'], unique=False)

    op.create_table('himalia_job_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('slot', sa.DateTime(timezone=True), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('retry_of', sa.Integer(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('error', sa.JSON(), nullable=False),
    sa.Column('cells_done', sa.Integer(), nullable=False),
    sa.Column('cells_total', sa.Integer(), nullable=False),
    sa.Column('cell_seconds', sa.JSON(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('runner_pid', sa.Integer(), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outputs_removed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['himalia_jobs.id'], name=op.f('fk_himalia_job_runs_job_id_himalia_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_job_runs')),
    sa.UniqueConstraint('job_id', 'slot', name=op.f('uq_himalia_job_runs_job_id'))
    )
    with op.batch_alter_table('himalia_job_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_job_runs_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_job_runs_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_job_runs_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_job_runs_state'), ['state'], unique=False)

    op.create_table('himalia_job_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('notebook', sa.String(length=64), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('source_path', sa.String(length=1024), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['himalia_jobs.id'], name=op.f('fk_himalia_job_versions_job_id_himalia_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_job_versions')),
    sa.UniqueConstraint('job_id', 'version', name=op.f('uq_himalia_job_versions_job_id'))
    )
    with op.batch_alter_table('himalia_job_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_job_versions_job_id'), ['job_id'], unique=False)

    op.create_table('himalia_run_values',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('blob', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['himalia_job_runs.id'], name=op.f('fk_himalia_run_values_run_id_himalia_job_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_run_values')),
    sa.UniqueConstraint('run_id', 'name', name=op.f('uq_himalia_run_values_run_id'))
    )
    with op.batch_alter_table('himalia_run_values', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_run_values_run_id'), ['run_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('himalia_run_values', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_run_values_run_id'))

    op.drop_table('himalia_run_values')
    with op.batch_alter_table('himalia_job_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_job_versions_job_id'))

    op.drop_table('himalia_job_versions')
    with op.batch_alter_table('himalia_job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_job_runs_state'))
        batch_op.drop_index(batch_op.f('ix_himalia_job_runs_owner'))
        batch_op.drop_index(batch_op.f('ix_himalia_job_runs_job_id'))
        batch_op.drop_index(batch_op.f('ix_himalia_job_runs_created_at'))

    op.drop_table('himalia_job_runs')
    with op.batch_alter_table('himalia_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_jobs_owner'))

    op.drop_table('himalia_jobs')
