"""dashboards: published notebooks and their versions

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('himalia_dashboards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('shared_users', sa.JSON(), nullable=False),
    sa.Column('shared_groups', sa.JSON(), nullable=False),
    sa.Column('shared_viewers', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('views', sa.Integer(), nullable=False),
    sa.Column('thumbnail', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_viewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_dashboards')),
    sa.UniqueConstraint('name', name=op.f('uq_himalia_dashboards_name'))
    )
    op.create_index(op.f('ix_himalia_dashboards_owner'), 'himalia_dashboards', ['owner'], unique=False)
    op.create_index(op.f('ix_himalia_dashboards_job_id'), 'himalia_dashboards', ['job_id'], unique=False)
    op.create_table('himalia_dashboard_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dashboard_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('notebook', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dashboard_id'], ['himalia_dashboards.id'],
                            name=op.f('fk_himalia_dashboard_versions_dashboard_id_himalia_dashboards'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_dashboard_versions')),
    sa.UniqueConstraint('dashboard_id', 'version', name=op.f('uq_himalia_dashboard_versions_dashboard_id'))
    )


def downgrade() -> None:
    op.drop_table('himalia_dashboard_versions')
    op.drop_index(op.f('ix_himalia_dashboards_job_id'), table_name='himalia_dashboards')
    op.drop_index(op.f('ix_himalia_dashboards_owner'), table_name='himalia_dashboards')
    op.drop_table('himalia_dashboards')
