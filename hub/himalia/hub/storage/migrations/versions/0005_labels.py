"""labels: label sets, items, leases, annotations, snapshots

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('himalia_labelsets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=255), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('shared_users', sa.JSON(), nullable=False),
    sa.Column('shared_groups', sa.JSON(), nullable=False),
    sa.Column('strategy', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=512), nullable=False),
    sa.Column('items_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_labelsets')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_himalia_labelsets_owner'))
    )
    with op.batch_alter_table('himalia_labelsets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_labelsets_owner'), ['owner'], unique=False)

    op.create_table('himalia_label_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('labelset_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('row', sa.JSON(), nullable=True),
    sa.Column('image', sa.LargeBinary(), nullable=True),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=1024), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('labels_count', sa.Integer(), nullable=False),
    sa.Column('done', sa.Boolean(), nullable=False),
    sa.Column('adjudicated', sa.JSON(), nullable=True),
    sa.Column('adjudicated_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['labelset_id'], ['himalia_labelsets.id'], name=op.f('fk_himalia_label_items_labelset_id_himalia_labelsets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_label_items')),
    sa.UniqueConstraint('labelset_id', 'key', name=op.f('uq_himalia_label_items_labelset_id'))
    )
    with op.batch_alter_table('himalia_label_items', schema=None) as batch_op:
        batch_op.create_index('ix_himalia_label_items_queue', ['labelset_id', 'done', 'priority', 'position'], unique=False)

    op.create_table('himalia_label_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('labelset_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('annotations', sa.Integer(), nullable=False),
    sa.Column('agreement', sa.JSON(), nullable=False),
    sa.Column('rows', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['labelset_id'], ['himalia_labelsets.id'], name=op.f('fk_himalia_label_snapshots_labelset_id_himalia_labelsets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_label_snapshots')),
    sa.UniqueConstraint('labelset_id', 'version', name=op.f('uq_himalia_label_snapshots_labelset_id'))
    )
    op.create_table('himalia_label_annotations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('labelset_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('label', sa.JSON(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('live_key', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['himalia_label_items.id'], name=op.f('fk_himalia_label_annotations_item_id_himalia_label_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_label_annotations')),
    sa.UniqueConstraint('live_key', name=op.f('uq_himalia_label_annotations_live_key'))
    )
    with op.batch_alter_table('himalia_label_annotations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_label_annotations_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_himalia_label_annotations_labelset_id'), ['labelset_id'], unique=False)

    op.create_table('himalia_label_leases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('labelset_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=False),
    sa.Column('skipped', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['himalia_label_items.id'], name=op.f('fk_himalia_label_leases_item_id_himalia_label_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_himalia_label_leases')),
    sa.UniqueConstraint('item_id', 'user', name=op.f('uq_himalia_label_leases_item_id'))
    )
    with op.batch_alter_table('himalia_label_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_himalia_label_leases_labelset_id'), ['labelset_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('himalia_label_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_label_leases_labelset_id'))

    op.drop_table('himalia_label_leases')
    with op.batch_alter_table('himalia_label_annotations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_label_annotations_labelset_id'))
        batch_op.drop_index(batch_op.f('ix_himalia_label_annotations_item_id'))

    op.drop_table('himalia_label_annotations')
    op.drop_table('himalia_label_snapshots')
    with op.batch_alter_table('himalia_label_items', schema=None) as batch_op:
        batch_op.drop_index('ix_himalia_label_items_queue')

    op.drop_table('himalia_label_items')
    with op.batch_alter_table('himalia_labelsets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_himalia_labelsets_owner'))

    op.drop_table('himalia_labelsets')
