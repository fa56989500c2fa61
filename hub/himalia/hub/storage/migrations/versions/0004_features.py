"""feature store: statistics of views, materializations, and feature refs of deployed models

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('himalia_deployment_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('features', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('feature_specs', sa.JSON(), nullable=True))
    op.create_table('himalia_feature_stats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('view', sa.String(length=255), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('entities', sa.BigInteger(), nullable=False),
    sa.Column('latest_event', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_feature_stats')),
    sa.UniqueConstraint('view', name=op.f('uq_himalia_feature_stats_view'))
    )
    op.create_table('himalia_feature_materializations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('view', sa.String(length=255), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('job_run_id', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_feature_materializations'))
    )
    with op.batch_alter_table('himalia_feature_materializations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_feature_materializations_view'), ['view'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('himalia_feature_materializations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_feature_materializations_view'))
    op.drop_table('himalia_feature_materializations')
    op.drop_table('himalia_feature_stats')
    with op.batch_alter_table('himalia_deployment_versions', schema=None) as batch_op:
        batch_op.drop_column('feature_specs')
        batch_op.drop_column('features')
