"""model deployments: deployments, versions, API keys and the prediction log

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('himalia_deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('shared_with', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_deployments')),
    sa.UniqueConstraint('name', name=op.f('uq_himalia_deployments_name'))
    )
    with op.batch_alter_table('himalia_deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_deployments_owner'), ['owner'], unique=False)

    op.create_table('himalia_deployment_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['himalia_deployments.id'], name=op.f('fk_himalia_deployment_keys_deployment_id_himalia_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_deployment_keys')),
    sa.UniqueConstraint('digest', name=op.f('uq_himalia_deployment_keys_digest'))
    )
    with op.batch_alter_table('himalia_deployment_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_deployment_keys_deployment_id'), ['deployment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_deployment_keys_prefix'), ['prefix'], unique=False)

    op.create_table('himalia_deployment_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('model_uri', sa.String(length=1024), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('bento_tag', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('traffic', sa.Integer(), nullable=False),
    sa.Column('target_traffic', sa.Integer(), nullable=False),
    sa.Column('replicas', sa.Integer(), nullable=False),
    sa.Column('service_code', sa.Text(), nullable=False),
    sa.Column('lineage', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['himalia_deployments.id'], name=op.f('fk_himalia_deployment_versions_deployment_id_himalia_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_deployment_versions')),
    sa.UniqueConstraint('deployment_id', 'version', name=op.f('uq_himalia_deployment_versions_deployment_id'))
    )
    with op.batch_alter_table('himalia_deployment_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_deployment_versions_deployment_id'), ['deployment_id'], unique=False)

    op.create_table('himalia_predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('deployment_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('caller', sa.String(length=255), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('outputs', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['himalia_deployments.id'], name=op.f('fk_himalia_predictions_deployment_id_himalia_deployments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_predictions'))
    )
    with op.batch_alter_table('himalia_predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_predictions_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_predictions_deployment_id'), ['deployment_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('himalia_predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_predictions_deployment_id'))
        batch_op.drop_index(batch_op.f('ix_himalia_predictions_at'))

    op.drop_table('himalia_predictions')
    with op.batch_alter_table('himalia_deployment_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_deployment_versions_deployment_id'))

    op.drop_table('himalia_deployment_versions')
    with op.batch_alter_table('himalia_deployment_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_deployment_keys_prefix'))
        batch_op.drop_index(batch_op.f('ix_himalia_deployment_keys_deployment_id'))

    op.drop_table('himalia_deployment_keys')
    with op.batch_alter_table('himalia_deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_deployments_owner'))

    op.drop_table('himalia_deployments')
